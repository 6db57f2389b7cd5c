/* SPDX-License-Identifier: MIT */
/*
 * Attached where the target never runs (its DT_FINI function, else DT_INIT) with the `line`
 * probe's semaphore as ref_ctr_offset: the kernel raises that semaphore while this link lives
 * and lowers it when the link goes, even if the tracer is killed. CPython 3.11 only reaches
 * function__entry while that semaphore is up (src/kernel/attach.ts, raiseLineSemaphore).
 */
#ifndef USDTRACE_LINE_SEMAPHORE_BPF_H
#define USDTRACE_LINE_SEMAPHORE_BPF_H

SEC("uprobe")
int hold_semaphore(struct pt_regs *ctx)
{
	return 0;
}

#endif /* USDTRACE_LINE_SEMAPHORE_BPF_H */

// Uprobe multi links (BPF_TRACE_UPROBE_MULTI, Linux 6.6): many uprobes of one file in one link,
// detached together in one RCU grace period instead of one per perf-event uprobe.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

constexpr uint32_t kUprobeMultiAttachType = 48;  // BPF_TRACE_UPROBE_MULTI; libbpf-dev predates it

struct UprobeSite {
  uint64_t fileOffset;
  uint64_t refCtrOffset;  // the USDT semaphore, 0 for none
  uint64_t cookie;
};

// Whether this kernel makes uprobe multi links, asked once per process;
// USDTRACE_UPROBE_MULTI=0 answers no, to take the per-site perf path of older kernels.
bool UprobeMultiSupported();

// One link holding every site of `path` (pid -1: every process); its fd, or -errno.
int AttachUprobeMulti(int programFd, int pid, const std::string& path, const std::vector<UprobeSite>& sites,
                      bool retprobe);

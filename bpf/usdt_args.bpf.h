/* SPDX-License-Identifier: MIT */
/*
 * USDT arguments, read the way usdtrace attaches: user space parses each probe site's argument
 * spec into a struct usdt_spec (usdtrace.h) in usdt_specs and attaches the uprobe with the
 * slot as its BPF cookie. A program looks its spec up once per run; each argument is then a
 * register read from ctx at a constant offset (libbpf's bpf_usdt_arg looks the spec up on every
 * call and copies the register with bpf_probe_read_kernel), plus one user read for memory
 * operands.
 *
 * A hot program can do without the lookup. When all the sites it is attached to pass their
 * arguments alike (CPython's call probes have one site each), user space writes that spec
 * before load into a `const volatile struct usdt_spec` the program names: the verifier reads
 * every field of it as a constant and drops the branches not taken, so an argument costs one
 * register load and the program makes no helper call for it. A helper call is what a probe
 * hit pays most for (some 20 ns each on CPUs whose return-stack mitigations guard every `ret`).
 */
#ifndef USDT_ARGS_BPF_H
#define USDT_ARGS_BPF_H

#include "usdtrace.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, USDT_SPECS_MAX);
	__type(key, __u32);
	__type(value, struct usdt_spec);
} usdt_specs SEC(".maps");

/*
 * The spec user space fixed for the program (`fixed`, when it gave one: arg_count is 0 in one
 * never written), else this attachment's; NULL when the cookie names no slot.
 */
static __always_inline const volatile struct usdt_spec *usdt_spec(struct pt_regs *ctx, const volatile struct usdt_spec *fixed)
{
	__u32 slot;

	if (fixed && fixed->arg_count)
		return fixed;
	slot = bpf_get_attach_cookie(ctx);
	return bpf_map_lookup_elem(&usdt_specs, &slot);
}

static __always_inline __u64 usdt_cookie(const volatile struct usdt_spec *spec)
{
	return spec ? spec->cookie : 0;
}

/*
 * The load is spelled in assembly because clang would otherwise merge the cases into one load
 * from ctx plus a computed offset, which the verifier refuses.
 */
#define USDT_REG_CASE(n) \
	case n: \
		asm volatile("%0 = *(u64 *)(%1 + %2)" : "=r"(value) : "r"(ctx), "i"((n) * 8)); \
		return value;

/*
 * Word `reg` of the user registers, as src/kernel/usdt-args.ts numbers them. The verifier only
 * admits constant offsets into ctx, hence one case per word: of x86-64's struct pt_regs
 * (r15 .. ss, 21 words), or of arm64's user_pt_regs, which its pt_regs starts with (x0 .. x30,
 * sp, pc: 33 words).
 */
static __always_inline __u64 usdt_register(struct pt_regs *ctx, __u8 reg)
{
	__u64 value;

	switch (reg) {
	USDT_REG_CASE(0) USDT_REG_CASE(1) USDT_REG_CASE(2) USDT_REG_CASE(3) USDT_REG_CASE(4)
	USDT_REG_CASE(5) USDT_REG_CASE(6) USDT_REG_CASE(7) USDT_REG_CASE(8) USDT_REG_CASE(9)
	USDT_REG_CASE(10) USDT_REG_CASE(11) USDT_REG_CASE(12) USDT_REG_CASE(13) USDT_REG_CASE(14)
	USDT_REG_CASE(15) USDT_REG_CASE(16) USDT_REG_CASE(17) USDT_REG_CASE(18) USDT_REG_CASE(19)
	USDT_REG_CASE(20)
#if defined(__TARGET_ARCH_arm64)
	USDT_REG_CASE(21) USDT_REG_CASE(22) USDT_REG_CASE(23) USDT_REG_CASE(24) USDT_REG_CASE(25)
	USDT_REG_CASE(26) USDT_REG_CASE(27) USDT_REG_CASE(28) USDT_REG_CASE(29) USDT_REG_CASE(30)
	USDT_REG_CASE(31) USDT_REG_CASE(32)
#elif !defined(__TARGET_ARCH_x86)
#error "USDT arguments are read on x86_64 and aarch64 only"
#endif
	default:
		return 0;
	}
}

#undef USDT_REG_CASE

/* Argument n, sign- or zero-extended from its size; 0 past the probe's arguments. */
static __always_inline long usdt_arg(struct pt_regs *ctx, const volatile struct usdt_spec *spec, __u32 n)
{
	const volatile struct usdt_arg_spec *arg;
	__u64 value = 0, index = n;
	__u32 shift;

	if (!spec || index >= spec->arg_count || index >= USDT_MAX_ARGS)
		return 0;
	/* Keeps clang from indexing with a copy of n the verifier has not seen bounded. */
	asm volatile("" : "+r"(index));
	arg = &spec->args[index];
	switch (arg->kind) {
	case USDT_ARG_CONST:
		value = arg->value;
		break;
	case USDT_ARG_REG:
		value = usdt_register(ctx, arg->reg);
		break;
	case USDT_ARG_REG_DEREF: {
		__u32 size = arg->size;

		if (size > sizeof(value))
			return 0;
		/* Little-endian: the operand's bytes land in the low end of value. */
		if (bpf_probe_read_user(&value, size, (const void *)(usdt_register(ctx, arg->reg) + arg->value)))
			return 0;
		break;
	}
	default:
		return 0;
	}
	shift = 64 - 8 * (arg->size & 0xf);
	if (shift >= 64)
		return value;
	if (arg->is_signed)
		return ((long)(value << shift)) >> shift;
	return (value << shift) >> shift;
}

#endif /* USDT_ARGS_BPF_H */

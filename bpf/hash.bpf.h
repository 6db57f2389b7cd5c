/* SPDX-License-Identifier: MIT */
/*
 * MurmurHash3's 64-bit finalizer (fmix64), and its first round on its own (mix): one multiply
 * that already spreads every input bit into the high ones, enough to pick or check a cache slot
 * on the event path. The whole finalizer is for keys that must not collide.
 */
#ifndef USDTRACE_HASH_BPF_H
#define USDTRACE_HASH_BPF_H

static __always_inline __u64 mix(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	return h;
}

static __always_inline __u64 fmix(__u64 h)
{
	h = mix(h);
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

#endif /* USDTRACE_HASH_BPF_H */

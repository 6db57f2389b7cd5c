/* SPDX-License-Identifier: MIT */
/*
 * Reading a name out of the traced process: a Python file or function name, a module name, a
 * path, a string argument. Every object reads them the same way, up to USDTRACE_NAME_MAX bytes
 * whole; a longer one is cut to that and flagged, never dropped.
 */
#ifndef USDTRACE_READ_NAME_BPF_H
#define USDTRACE_READ_NAME_BPF_H

/* Room for one name read: USDTRACE_NAME_MAX bytes, one more to tell a longer name, the NUL. */
#define NAME_READ (USDTRACE_NAME_MAX + 2)

/*
 * Copies the string at `src` into `dst` (NAME_READ bytes of room) and returns its length, cut
 * to USDTRACE_NAME_MAX: then `truncated` is set in *flags. An unreadable string reads as empty.
 */
static __always_inline __u32 read_name(char *dst, __u64 src, __u8 *flags, __u8 truncated)
{
	long copied = bpf_probe_read_user_str(dst, NAME_READ, (const void *)src);

	if (copied <= 1)
		return 0;
	if (copied - 1 > USDTRACE_NAME_MAX) {
		*flags |= truncated;
		return USDTRACE_NAME_MAX;
	}
	return copied - 1;
}

/*
 * The names a Python call probe hands over, packed: the file's bytes, then the function's
 * right after them (`dst` has room for USDTRACE_NAME_MAX + NAME_READ). Returns their total size.
 */
static __always_inline __u32 read_code_names(char *dst, __u64 file, __u64 func, __u16 *file_len, __u16 *func_len,
					     __u8 *flags, __u8 file_truncated, __u8 func_truncated)
{
	__u32 file_bytes = read_name(dst, file, flags, file_truncated);
	__u32 func_bytes = read_name(dst + file_bytes, func, flags, func_truncated);

	*file_len = file_bytes;
	*func_len = func_bytes;
	return file_bytes + func_bytes;
}

#endif /* USDTRACE_READ_NAME_BPF_H */

// SPDX-License-Identifier: MIT
/*
 * PEP 578 audit events (python:audit: the event name and the argument tuple, a PyObject *).
 * The name filter runs here, in a hash map of the wanted names. The arguments are decoded from
 * the target's memory with the object layout user space gives for the target's CPython version:
 * str (ASCII text only), bytes, int, bool, and one level of tuple or list; any other object
 * arrives as its type's name. Nothing is dereferenced that the type flags have not vouched for.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "usdt_args.bpf.h"
#include "ringbuf.bpf.h"
#include "python_stack.bpf.h"

/* A name as read and as keyed in `wanted`: AUDIT_NAME_MAX bytes, one more to see a longer one, the NUL. */
#define NAME_KEY (AUDIT_NAME_MAX + 2)
/*
 * Offsets into the data after the header (the name, then the arguments) are masked with this
 * before each write: the encoders' own checks keep them far below it, but only a mask survives
 * the compiler's reordering for the verifier to see. The data has room for a worst-case write
 * at the largest masked offset.
 */
#define DATA_MASK 2047
#define TEXT_MASK 511
#define DATA_BYTES (DATA_MASK + 1 + sizeof(struct audit_value) + TEXT_MASK + 1)
_Static_assert(NAME_KEY + AUDIT_ARGS_MAX <= DATA_MASK, "the arguments fit under the mask");
_Static_assert(AUDIT_VALUE_MAX <= TEXT_MASK, "a text fits under its mask");
/* What the encoders return when the arguments have no room left. */
#define NO_ROOM 0xffffffffu
/* Longest type name read; CPython's own are far shorter. */
#define TYPE_NAME_MAX 64

/* Type flags that say what an object is; the same bits in every CPython 3. */
#define TPFLAGS_LONG_SUBCLASS (1ULL << 24)
#define TPFLAGS_LIST_SUBCLASS (1ULL << 25)
#define TPFLAGS_TUPLE_SUBCLASS (1ULL << 26)
#define TPFLAGS_BYTES_SUBCLASS (1ULL << 27)
#define TPFLAGS_UNICODE_SUBCLASS (1ULL << 28)

/* Set by user space before load. Without decode_args, events carry the name alone. */
const volatile __u8 filter_events = 0;
const volatile __u8 decode_args = 0;
/* The target's object layout (offsets in bytes), for its CPython version: see src/streams/audit.ts. */
const volatile __u32 ob_type_offset = 0;
const volatile __u32 var_size_offset = 0;
const volatile __u32 tp_name_offset = 0;
const volatile __u32 tp_flags_offset = 0;
const volatile __u32 tuple_items_offset = 0;
const volatile __u32 list_items_offset = 0;
const volatile __u32 str_length_offset = 0;
const volatile __u32 str_state_offset = 0;
/* Bits of the str state that must all be set for its text to be ASCII right after the header. */
const volatile __u32 str_ascii_state_mask = 0;
const volatile __u32 str_ascii_data_offset = 0;
const volatile __u32 bytes_data_offset = 0;
const volatile __u32 long_digits_offset = 0;
const volatile __u32 long_digit_bits = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, char[NAME_KEY]);
	__type(value, __u8);
} wanted SEC(".maps");

struct audit_record {
	struct audit_event event;
	char data[DATA_BYTES];
	char key[NAME_KEY];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct audit_record);
} scratch SEC(".maps");

static __always_inline char *at(struct audit_record *rec, __u64 off)
{
	return rec->data + (off & DATA_MASK);
}

static __always_inline __u64 read_pointer(__u64 address)
{
	__u64 value = 0;

	bpf_probe_read_user(&value, sizeof(value), (const void *)address);
	return value;
}

/* Writes a value header at `off` and returns where its payload goes, or NO_ROOM. */
static __always_inline __u32 put_header(struct audit_record *rec, __u32 off, __u32 limit, __u32 payload,
					__u8 kind, __u8 flags, __u16 len)
{
	struct audit_value *value;

	if (off + sizeof(*value) + payload > limit)
		return NO_ROOM;
	value = (struct audit_value *)at(rec, off);
	value->kind = kind;
	value->flags = flags;
	value->len = len;
	return off + sizeof(*value);
}

/* `len` bytes of text from the target at `src`, cut to AUDIT_VALUE_MAX. */
static __always_inline __u32 put_text(struct audit_record *rec, __u32 off, __u32 limit, __u8 kind,
				      __u64 src, __s64 len)
{
	__u8 flags = 0;
	__u64 n = len < 0 ? 0 : len;

	if (n > AUDIT_VALUE_MAX) {
		n = AUDIT_VALUE_MAX;
		flags = AUDIT_VALUE_CUT;
	}
	off = put_header(rec, off, limit, n, kind, flags, n);
	if (off == NO_ROOM)
		return NO_ROOM;
	bpf_probe_read_user(at(rec, off), n & TEXT_MASK, (const void *)src);
	return off + n;
}

/* The name of the object's type, as AUDIT_VALUE_OBJECT. */
static __always_inline __u32 put_type_name(struct audit_record *rec, __u32 off, __u32 limit, __u64 type)
{
	__u32 payload = off + sizeof(struct audit_value);
	long copied;

	if (put_header(rec, off, limit, TYPE_NAME_MAX, AUDIT_VALUE_OBJECT, 0, 0) == NO_ROOM)
		return NO_ROOM;
	copied = bpf_probe_read_user_str(at(rec, payload), TYPE_NAME_MAX,
					 (const void *)read_pointer(type + tp_name_offset));
	if (copied < 1)
		copied = 1;
	((struct audit_value *)at(rec, off))->len = copied - 1;
	return payload + copied - 1;
}

/* An int of up to two digits (60 bits with 30-bit digits) as its value, a longer one by type. */
static __always_inline __u32 put_int(struct audit_record *rec, __u32 off, __u32 limit, __u64 obj, __u64 type)
{
	__s64 size = read_pointer(obj + var_size_offset);
	__u32 digits[2] = {};
	char name[5] = {};
	__s64 value;
	__u8 kind = AUDIT_VALUE_INT;

	if (size > 2 || size < -2)
		return put_type_name(rec, off, limit, type);
	/* |size| digits follow the header, least significant first; zero has none. */
	if (size != 0)
		bpf_probe_read_user(&digits[0], sizeof(digits[0]), (const void *)(obj + long_digits_offset));
	if (size == 2 || size == -2)
		bpf_probe_read_user(&digits[1], sizeof(digits[1]),
				    (const void *)(obj + long_digits_offset + sizeof(digits[0])));
	value = digits[0] | ((__s64)digits[1] << long_digit_bits);
	if (size < 0)
		value = -value;
	bpf_probe_read_user_str(name, sizeof(name), (const void *)read_pointer(type + tp_name_offset));
	if (name[0] == 'b' && name[1] == 'o' && name[2] == 'o' && name[3] == 'l' && name[4] == 0)
		kind = AUDIT_VALUE_BOOL;
	off = put_header(rec, off, limit, sizeof(value), kind, 0, sizeof(value));
	if (off == NO_ROOM)
		return NO_ROOM;
	__builtin_memcpy(at(rec, off), &value, sizeof(value));
	return off + sizeof(value);
}

/*
 * One object that is not a container to descend into: str, bytes, int, bool, else its type.
 * Global, like put_item, so the verifier checks it once rather than at every call with every
 * offset it might be given (the masks keep any offset inside the record).
 */
__noinline __u32 put_scalar(struct audit_record *rec, __u32 off, __u32 limit, __u64 obj)
{
	__u64 type, flags;
	__u32 state = 0;

	if (!rec || off == NO_ROOM || !obj)
		return NO_ROOM;
	type = read_pointer(obj + ob_type_offset);
	flags = read_pointer(type + tp_flags_offset);
	if (!type)
		return NO_ROOM;
	if (flags & TPFLAGS_UNICODE_SUBCLASS) {
		bpf_probe_read_user(&state, sizeof(__u8), (const void *)(obj + str_state_offset));
		if ((state & str_ascii_state_mask) == str_ascii_state_mask)
			return put_text(rec, off, limit, AUDIT_VALUE_STR, obj + str_ascii_data_offset,
					read_pointer(obj + str_length_offset));
	} else if (flags & TPFLAGS_BYTES_SUBCLASS) {
		return put_text(rec, off, limit, AUDIT_VALUE_BYTES, obj + bytes_data_offset,
				read_pointer(obj + var_size_offset));
	} else if (flags & TPFLAGS_LONG_SUBCLASS) {
		return put_int(rec, off, limit, obj, type);
	}
	return put_type_name(rec, off, limit, type);
}

/* A tuple or list inside the arguments, its first items as scalars: returns the end, or NO_ROOM. */
static __always_inline __u32 put_sequence(struct audit_record *rec, __u32 off, __u32 limit, __u64 obj,
					  __u64 items, __u8 kind)
{
	__s64 size = read_pointer(obj + var_size_offset);
	__u32 header = off, count = 0, next;
	__u8 flags = 0;
	int i;

	off = put_header(rec, off, limit, 0, kind, 0, 0);
	if (off == NO_ROOM)
		return NO_ROOM;
	for (i = 0; i < AUDIT_NESTED_ITEMS_MAX; i++) {
		if (i >= size)
			break;
		next = put_scalar(rec, off, limit, read_pointer(items + i * sizeof(__u64)));
		if (next == NO_ROOM)
			break;
		off = next;
		count++;
	}
	if (size > count)
		flags = AUDIT_VALUE_CUT;
	((struct audit_value *)at(rec, header))->flags = flags;
	((struct audit_value *)at(rec, header))->len = count;
	return off;
}

/* An item of the argument tuple: a tuple or list is opened one level, anything else is a scalar. */
__noinline __u32 put_item(struct audit_record *rec, __u32 off, __u32 limit, __u64 obj)
{
	__u64 type, flags;

	if (!rec || off == NO_ROOM || !obj)
		return NO_ROOM;
	type = read_pointer(obj + ob_type_offset);
	flags = read_pointer(type + tp_flags_offset);
	if (!type)
		return NO_ROOM;
	if (flags & TPFLAGS_TUPLE_SUBCLASS)
		return put_sequence(rec, off, limit, obj, obj + tuple_items_offset, AUDIT_VALUE_TUPLE);
	if (flags & TPFLAGS_LIST_SUBCLASS)
		return put_sequence(rec, off, limit, obj, read_pointer(obj + list_items_offset), AUDIT_VALUE_LIST);
	return put_scalar(rec, off, limit, obj);
}

/* The argument tuple as one AUDIT_VALUE_TUPLE; false when it is not a tuple. */
static __always_inline bool put_arguments(struct audit_record *rec, __u32 start, __u64 args)
{
	__u64 type = read_pointer(args + ob_type_offset);
	__s64 size = read_pointer(args + var_size_offset);
	__u32 limit = start + AUDIT_ARGS_MAX, off, next, count = 0;
	__u64 items = args + tuple_items_offset;
	int i;

	if (!args || !(read_pointer(type + tp_flags_offset) & TPFLAGS_TUPLE_SUBCLASS))
		return false;
	off = put_header(rec, start, limit, 0, AUDIT_VALUE_TUPLE, 0, 0);
	if (off == NO_ROOM)
		return false;
	for (i = 0; i < AUDIT_ITEMS_MAX; i++) {
		if (i >= size)
			break;
		next = put_item(rec, off, limit, read_pointer(items + i * sizeof(__u64)));
		if (next == NO_ROOM) {
			rec->event.flags |= AUDIT_ARGS_TRUNCATED;
			break;
		}
		off = next;
		count++;
	}
	((struct audit_value *)at(rec, start))->flags = size > count ? AUDIT_VALUE_CUT : 0;
	((struct audit_value *)at(rec, start))->len = count;
	rec->event.args_len = off - start;
	rec->event.flags |= AUDIT_ARGS_DECODED;
	return true;
}

SEC("usdt")
int on_audit(struct pt_regs *ctx)
{
	__u64 pid_tgid = current_pid_tgid();
	__u32 zero = 0;
	struct audit_record *rec = bpf_map_lookup_elem(&scratch, &zero);
	long name = 0, args = 0, copied;
	__u32 name_len = 0;
	__u64 data_len;

	if (!rec)
		return 0;
	const volatile struct usdt_spec *spec = usdt_spec(ctx, NULL);
	name = usdt_arg(ctx, spec, 0);
	args = usdt_arg(ctx, spec, 1);
	__builtin_memset(rec->key, 0, sizeof(rec->key));
	copied = bpf_probe_read_user_str(rec->key, sizeof(rec->key), (const void *)name);
	if (filter_events && !bpf_map_lookup_elem(&wanted, rec->key))
		return 0;

	rec->event.flags = 0;
	rec->event.args_len = 0;
	if (copied > 1)
		name_len = copied - 1;
	if (name_len > AUDIT_NAME_MAX) {
		name_len = AUDIT_NAME_MAX;
		rec->event.flags |= AUDIT_NAME_TRUNCATED;
	}
	__builtin_memcpy(rec->data, rec->key, sizeof(rec->key));
	if (decode_args)
		put_arguments(rec, name_len, args);

	rec->event.timestamp_ns = bpf_ktime_get_ns();
	rec->event.pid = pid_tgid >> 32;
	rec->event.tid = (__u32)pid_tgid;
	rec->event.name_len = name_len;
	data_len = (name_len + rec->event.args_len) & DATA_MASK;
	send_event_stack(rec->event.timestamp_ns);
	submit_event(rec, sizeof(rec->event) + data_len);
	return 0;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";

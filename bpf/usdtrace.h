/* SPDX-License-Identifier: MIT */
/*
 * The records BPF writes into ring buffers and the values user space hands it. This header is
 * the one definition: the BPF programs fill these structs, and the TypeScript side reads them
 * through src/kernel/abi.ts, which the build generates from the compiled objects' BTF
 * (scripts/generate-abi.js). Limits are enums rather than #defines so that they reach BTF too;
 * struct usdtrace_abi at the end names everything user space reads.
 */
#ifndef USDTRACE_H
#define USDTRACE_H

enum usdtrace_name_limits {
	/* A name longer than this is cut to it and flagged; anything up to it arrives whole. */
	USDTRACE_NAME_MAX = 512,
	/* The longest function or file prefix a call trace can filter on in the kernel. */
	USDTRACE_PREFIX_MAX = 256,
};

enum call_kind {
	CALL_ENTRY = 0,
	CALL_RETURN = 1,
	/* Not a call: the names behind name_id follow (file_len, func_len), for the calls that refer to it. */
	CALL_NAMES = 2,
	/* Not a call: name_id will not be referred to again. */
	CALL_FORGET = 3,
};

enum call_flags {
	CALL_HAS_DURATION = 1 << 0,
	CALL_FILE_TRUNCATED = 1 << 1,
	CALL_FUNC_TRUNCATED = 1 << 2,
};

/*
 * One Python function entry or return. Its names are those of an earlier CALL_NAMES record
 * with the same name_id, or, when name_id is 0, the record carries them itself: the header is
 * followed by file_len bytes of the file name, then func_len bytes of the function name,
 * without NULs.
 */
struct call_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u64 duration_ns;  /* valid when CALL_HAS_DURATION */
	__u32 pid;
	__u32 tid;
	__s32 line;
	__u16 depth;
	__u8 kind;  /* enum call_kind */
	__u8 flags; /* enum call_flags */
	__u16 file_len;
	__u16 func_len;
	__u32 cpu; /* the CPU the probe fired on */
	__u32 name_id;
	__u32 reserved;
};

/*
 * Per syscall number, what user space asks of the BPF side (the `syscall_flags` array): whether
 * it is traced, whether it never returns (its event is sent at entry), and which argument, if
 * any, is a path to read as the event's detail (index + 1 in the SYSCALL_PATH_ARG bits).
 */
enum syscall_flags {
	SYSCALL_WANTED = 1 << 0,
	SYSCALL_NEVER_RETURNS = 1 << 1,
	SYSCALL_PATH_ARG_SHIFT = 4,
	SYSCALL_PATH_ARG_MASK = 7 << 4,
};

enum syscall_table {
	/* Numbers at or above this have no entry in `syscall_flags`; they are traced when every syscall is. */
	USDTRACE_SYSCALL_TABLE_SIZE = 1024,
};

enum syscall_event_flags {
	SYSCALL_RETURNED = 1 << 0,	   /* ret and duration_ns are valid */
	SYSCALL_DETAIL_TRUNCATED = 1 << 1, /* the detail was longer than USDTRACE_NAME_MAX */
};

/*
 * One system call, sent when it returns (or at entry for exit and exit_group). The record is
 * sized to its detail: detail_len bytes of text (a path argument read at entry) follow the
 * header, without a NUL.
 */
struct syscall_event {
	__u64 timestamp_ns; /* entry, CLOCK_MONOTONIC */
	__u64 duration_ns;
	__u64 args[6];
	__s64 ret;
	__u32 pid;
	__u32 tid;
	__u32 nr;
	__u16 detail_len;
	__u8 flags; /* enum syscall_event_flags */
	__u8 reserved;
};

enum latency_histogram {
	/* Latency buckets: bucket k counts durations in [2^k, 2^(k+1)) ns, bucket 0 also 0 ns. */
	USDTRACE_HISTOGRAM_BUCKETS = 64,
};

/*
 * What the kernel sums per Python function (in struct function_stats) and per syscall
 * (keyed by its number) over one snapshot interval. Only calls with a known duration are timed.
 */
struct latency_stats {
	__u64 calls;
	__u64 timed_calls;
	__u64 total_ns;
	__u64 self_ns; /* functions only: total minus the time in traced callees */
	__u64 min_ns;
	__u64 max_ns;
	__u64 histogram[USDTRACE_HISTOGRAM_BUCKETS];
};

/* A Python function's sums over one interval, and the id its names are stored under (function_names). */
struct function_stats {
	__u32 name_id;
	__u32 reserved;
	struct latency_stats stats;
};

/* The names behind a name id, stored once: file_len bytes of file, then func_len of function. */
struct function_names {
	__u16 file_len;
	__u16 func_len;
	__u8 truncated; /* either name was longer than USDTRACE_NAME_MAX */
	__u8 reserved[3];
	char names[2 * USDTRACE_NAME_MAX];
};

enum usdt_limits {
	/* The most arguments a USDT probe has (libbpf's BPF_USDT_MAX_ARG_CNT). */
	USDT_MAX_ARGS = 12,
};

/*
 * What user space tells usdt.bpf.c about one attachment, through its USDT cookie: bits 0-7
 * hold how many arguments to read, bit USDT_COOKIE_STR_SHIFT + i is set when argument i is a
 * pointer to a string to copy. Everything else about a type (width, sign) is applied by the
 * decoder, which knows the declared types.
 */
enum usdt_cookie {
	USDT_COOKIE_COUNT_MASK = 0xff,
	USDT_COOKIE_STR_SHIFT = 8,
};

enum usdt_flags {
	USDT_STR_TRUNCATED = 1 << 0,
};

/*
 * One hit of a USDT probe. The record is sized to its contents: the header is followed by
 * arg_count 8-byte values (each argument as libbpf read it, sign-extended from the probe's
 * declared width; for a string argument, its length), then the bytes of the string arguments
 * back to back, without NULs.
 */
struct usdt_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u32 pid;
	__u32 tid;
	__u8 arg_count;
	__u8 flags; /* enum usdt_flags */
	__u8 reserved[6]; /* zero; keeps the values that follow 8-byte aligned */
};

enum library_call_limits {
	/* The integer registers a library call's arguments arrive in, all of them recorded. */
	LIBRARY_CALL_ARGS = 6,
};

/* One completed call into a shared-library function, recorded when it returns. */
struct library_call_event {
	__u64 timestamp_ns; /* at entry, CLOCK_MONOTONIC */
	__u64 duration_ns;
	__u64 args[LIBRARY_CALL_ARGS];
	__u64 return_value;
	__u32 pid;
	__u32 tid;
	__u32 symbol; /* the attachment's cookie: which traced function */
	__u32 depth;  /* traced calls of this thread still running around this one */
};


/* One garbage collection, from python:gc__start to python:gc__done. */
struct gc_event {
	__u64 start_ns;    /* CLOCK_MONOTONIC */
	__u64 duration_ns;
	__s64 collected;   /* gc__done's argument: unreachable objects found, collectable or not */
	__u32 pid;
	__u32 tid;
	__s32 generation;  /* gc__start's argument */
	__u32 reserved;
};

enum import_flags {
	IMPORT_FOUND = 1 << 0,          /* import__find__load__done's flag: the module loaded */
	IMPORT_HAS_START = 1 << 1,      /* the start was traced: start_ns and duration_ns are valid */
	IMPORT_NAME_TRUNCATED = 1 << 2,
};

/*
 * One module load, from python:import__find__load__start to ..._done, sent at the done. The
 * header is followed by name_len bytes of the module name, without NUL.
 */
struct import_event {
	__u64 start_ns;    /* CLOCK_MONOTONIC */
	__u64 duration_ns;
	__u32 pid;
	__u32 tid;
	__u16 depth;       /* loads of this thread in progress around this one */
	__u8 flags;        /* enum import_flags */
	__u8 reserved;
	__u16 name_len;
	__u16 reserved2;
};

enum audit_limits {
	/* Audit event names up to this many bytes arrive whole and can be filtered on; longer ones are cut. */
	AUDIT_NAME_MAX = 62,
	/* Bytes of one decoded argument's text (str, bytes, type name); longer ones are cut and flagged. */
	AUDIT_VALUE_MAX = 256,
	/* Bytes of all decoded arguments of one event. */
	AUDIT_ARGS_MAX = 1024,
	/* Items decoded of the argument tuple, and of a tuple or list inside it. */
	AUDIT_ITEMS_MAX = 6,
	AUDIT_NESTED_ITEMS_MAX = 4,
};

enum audit_flags {
	AUDIT_NAME_TRUNCATED = 1 << 0,
	AUDIT_ARGS_DECODED = 1 << 1,    /* args_len bytes of audit_values follow the name */
	AUDIT_ARGS_TRUNCATED = 1 << 2,  /* AUDIT_ARGS_MAX ran out: later arguments are missing */
};

/*
 * What each decoded argument is. Every value starts with a struct audit_value; strings and type
 * names carry `len` bytes of text after it, an int or bool 8 bytes (little-endian s64), and a
 * tuple or list is followed by `len` values, its first items.
 */
enum audit_value_kind {
	AUDIT_VALUE_STR = 1,      /* a str whose text is ASCII */
	AUDIT_VALUE_BYTES = 2,
	AUDIT_VALUE_INT = 3,
	AUDIT_VALUE_BOOL = 4,
	AUDIT_VALUE_TUPLE = 5,
	AUDIT_VALUE_LIST = 6,
	AUDIT_VALUE_OBJECT = 7,   /* anything else (None too), or a str that is not ASCII: its type's name */
};

enum audit_value_flags {
	AUDIT_VALUE_CUT = 1 << 0, /* text cut to AUDIT_VALUE_MAX, or a tuple/list with more items */
};

struct audit_value {
	__u8 kind;   /* enum audit_value_kind */
	__u8 flags;  /* enum audit_value_flags */
	__u16 len;
};

/*
 * One PEP 578 audit event (python:audit). The header is followed by name_len bytes of the event
 * name, then args_len bytes: the argument tuple as one AUDIT_VALUE_TUPLE value.
 */
struct audit_event {
	__u64 timestamp_ns; /* CLOCK_MONOTONIC */
	__u32 pid;
	__u32 tid;
	__u16 name_len;
	__u16 args_len;
	__u8 flags;         /* enum audit_flags */
	__u8 reserved[3];
};

/* Per-process counts kept by bpf/stats.bpf.c: a per-CPU map value, summed by user space. */
struct python_stats {
	__u64 calls;        /* function__return */
	__u64 gc_runs;      /* gc__done */
	__u64 gc_collected; /* gc__done's argument, summed */
	__u64 imports;      /* import__find__load__start */
	__u64 threads;      /* PyThread_start_new_thread */
};

/*
 * How a program reads one attachment's USDT arguments (bpf/usdt_args.bpf.h): user space parses
 * the probe's argument spec string into this, writes it into the object's usdt_specs map and
 * attaches with the slot's index as the BPF cookie.
 */
enum usdt_specs_limits {
	USDT_SPECS_MAX = 256,
};

enum usdt_arg_kind {
	USDT_ARG_CONST = 0,     /* the value itself */
	USDT_ARG_REG = 1,       /* a register */
	USDT_ARG_REG_DEREF = 2, /* user memory at a register plus a displacement */
};

struct usdt_arg_spec {
	__s64 value;     /* USDT_ARG_CONST: the constant; USDT_ARG_REG_DEREF: the displacement */
	__u8 kind;       /* enum usdt_arg_kind */
	__u8 reg;        /* the register: its index in the user pt_regs, in 8-byte words */
	__u8 size;       /* 1, 2, 4 or 8 bytes */
	__u8 is_signed;  /* sign-extended from size, else zero-extended */
	__u8 reserved[4];
};

struct usdt_spec {
	__u64 cookie;    /* what the attaching code gave, for usdt_cookie() */
	__u32 arg_count;
	__u32 reserved;
	struct usdt_arg_spec args[USDT_MAX_ARGS];
};

/*
 * Python stacks, read by walking the interpreter's frames in the target's memory
 * (bpf/python_stack.bpf.h). A frame is the code object's id (a CODE record names it) and how
 * far into its instructions the frame is, from which user space finds the line.
 */
enum python_stack_limits {
	/* Frames a stack carries; a deeper stack keeps its innermost ones and is flagged truncated. */
	STACK_FRAMES_MAX = 127,
	/* Bytes of a code object's line table a CODE record carries; a longer one is cut and flagged. */
	LINETABLE_MAX = 16384,
	/* CPython layouts one trace can hold (processes of several versions at once). */
	PYTHON_LAYOUTS_MAX = 8,
	/* An offset the layout does not have (e.g. no _PyCFrame before 3.11 or after 3.12). */
	LAYOUT_NONE = 0xffff,
};

enum stack_record_kind {
	STACK_RECORD_SAMPLE = 1,  /* struct stack_sample, then depth struct python_frame */
	STACK_RECORD_CODE = 2,    /* struct code_record, then the file, function and line table bytes */
	STACK_RECORD_FORGET = 3,  /* struct code_record alone: the id will not be referred to again */
	STACK_RECORD_PROCESS = 4, /* struct stack_sample alone: a process of the traced binary not yet described */
	STACK_RECORD_EXIT = 5,    /* struct stack_sample alone: the process exited or ran another program */
	/*
	 * struct stack_sample, then its frames: the stack of the thread tid at the event of another
	 * stream (a syscall, a library call...) whose timestamp is timestamp_ns, sent just before it.
	 */
	STACK_RECORD_FRAMES = 6,
};

/*
 * Stack records go into other streams' rings too (their events' stacks, the names they refer
 * to), so each carries this in its second word: every other record starts with a CLOCK_MONOTONIC
 * timestamp, whose high half would reach it after 292 years of uptime.
 */
enum stack_record_tag {
	STACK_RECORD_TAG = 0x7fffffff,
};

enum stack_sample_flags {
	SAMPLE_ON_CPU = 1 << 0,     /* taken while the thread ran; else as it left the CPU to wait */
	SAMPLE_TRUNCATED = 1 << 1,  /* the stack was deeper than STACK_FRAMES_MAX */
	SAMPLE_UNREADABLE = 1 << 2, /* a frame could not be read: the stack ends early */
};

struct python_frame {
	__u32 code_id;
	/* Bytes into the code's instructions: where the frame is (3.10: its last instruction). */
	__u32 offset;
};

/* Every stack record starts with its kind (enum stack_record_kind) and STACK_RECORD_TAG. */
struct stack_sample {
	__u8 kind;          /* STACK_RECORD_SAMPLE, _PROCESS, _EXIT or _FRAMES */
	__u8 flags;         /* enum stack_sample_flags */
	__u16 depth;        /* frames that follow, innermost first */
	__u32 tag;          /* STACK_RECORD_TAG */
	__u32 pid;
	__u32 tid;
	__u32 cpu;
	__u32 reserved;
	__u64 timestamp_ns; /* CLOCK_MONOTONIC: the sample, or the thread's return to a CPU */
	__u64 off_cpu_ns;   /* off-CPU samples: how long the thread waited */
};

enum code_record_flags {
	CODE_FILE_TRUNCATED = 1 << 0,
	CODE_FUNC_TRUNCATED = 1 << 1,
	CODE_LINETABLE_TRUNCATED = 1 << 2,
};

/*
 * A code object's names and line table, the first time a process's stack holds it. The text of
 * each name is its str's own storage: file_kind and func_kind say how many bytes a character
 * takes (1: Latin-1, which ASCII is, 2: UCS-2, 4: UCS-4; 0: unreadable).
 */
struct code_record {
	__u8 kind;          /* STACK_RECORD_CODE or _FORGET */
	__u8 flags;         /* enum code_record_flags */
	__u8 file_kind;
	__u8 func_kind;
	__u32 tag;          /* STACK_RECORD_TAG */
	__u32 id;
	__u32 pid;
	__s32 first_line;
	__u32 linetable_len;
	__u16 file_len;
	__u16 func_len;
};

/*
 * Where one CPython version keeps what the frame walk reads, in bytes from the start of each
 * struct (src/cpython/layout.ts fills it from the version's headers or from _Py_DebugOffsets).
 */
struct python_offsets {
	__u16 runtime_interpreters;   /* _PyRuntimeState: interpreters.head */
	__u16 interpreter_next;
	__u16 interpreter_threads;    /* PyInterpreterState: the head of its thread states */
	__u16 thread_next;
	__u16 thread_id;              /* PyThreadState: native_thread_id, or 3.10's pthread thread_id */
	__u16 thread_frame;           /* PyThreadState: frame (3.10), cframe (3.11, 3.12), current_frame */
	__u16 cframe_current_frame;   /* _PyCFrame: current_frame, or LAYOUT_NONE */
	__u16 frame_previous;         /* f_back / previous */
	__u16 frame_code;             /* f_code / f_executable */
	__u16 frame_instruction;      /* f_lasti (3.10), prev_instr, instr_ptr */
	__u16 frame_owner;            /* owner, or LAYOUT_NONE (3.10) */
	__u16 code_filename;
	__u16 code_name;              /* co_qualname, co_name before 3.11 */
	__u16 code_first_line;
	__u16 code_linetable;
	__u16 code_instructions;      /* co_code_adaptive, or LAYOUT_NONE (3.10) */
	__u16 code_first_traceable;   /* _co_firsttraceable, or LAYOUT_NONE */
	__u16 object_type;            /* ob_type */
	__u16 unicode_state;
	__u16 unicode_length;
	__u16 unicode_ascii_data;     /* sizeof(PyASCIIObject): a compact ASCII str's text */
	__u16 unicode_compact_data;   /* sizeof(PyCompactUnicodeObject): any other compact str's */
	__u16 bytes_size;
	__u16 bytes_data;
	__u16 frame_window;           /* bytes of a frame the walk reads: up to its last field used */
	__u16 code_window;            /* bytes of a code object read: up to its last field used */
	__u8 owner_cstack;            /* the owner value of the C-stack shim frames 3.12 interleaves */
	__u8 owner_generator;         /* the owner value of a generator's frame */
	__u8 thread_id_is_pthread;    /* 3.10: match the thread by its pthread (fs base), not its tid */
	__u8 instruction_is_index;    /* 3.10: f_lasti counts 2-byte code units */
};

/* One traced process: where its runtime and code type are, and which layout reads it. */
struct python_process {
	__u64 runtime;   /* the address of _PyRuntime */
	__u64 code_type; /* the address of PyCode_Type */
	__u32 layout;    /* index into python_layouts */
	__u32 reserved;
};

/* What stackProfile sums per distinct stack: the key is the process, the flags and the frames. */
struct stack_key {
	__u32 pid;
	__u16 depth;
	__u8 flags;      /* SAMPLE_ON_CPU, SAMPLE_TRUNCATED, SAMPLE_UNREADABLE */
	__u8 reserved;
	struct python_frame frames[STACK_FRAMES_MAX];
};

struct stack_counts {
	__u64 samples;
	__u64 off_cpu_ns;
};

/*
 * Everything user space reads of this header, in one place BTF reaches: clang emits a type into
 * an object's BTF only when something emitted refers to it (never an enum whose constants alone
 * are used, and only a forward declaration of a struct seen through a pointer), so each object
 * carries this struct, by pointer, as the argument of a function nothing calls, which libbpf
 * leaves unloaded. scripts/generate-abi.js exports each type of a member here.
 */
struct usdtrace_abi {
	enum usdtrace_name_limits name_limits;
	enum call_kind call_kind;
	enum call_flags call_flags;
	struct call_event call_event;
	enum syscall_flags syscall_flags;
	enum syscall_table syscall_table;
	enum syscall_event_flags syscall_event_flags;
	struct syscall_event syscall_event;
	enum latency_histogram latency_histogram;
	struct latency_stats latency_stats;
	struct function_stats function_stats;
	struct function_names function_names;
	enum usdt_limits usdt_limits;
	enum usdt_cookie usdt_cookie;
	enum usdt_flags usdt_flags;
	struct usdt_event usdt_event;
	enum library_call_limits library_call_limits;
	struct library_call_event library_call_event;
	struct gc_event gc_event;
	enum import_flags import_flags;
	struct import_event import_event;
	enum audit_limits audit_limits;
	enum audit_flags audit_flags;
	enum audit_value_kind audit_value_kind;
	enum audit_value_flags audit_value_flags;
	struct audit_value audit_value;
	struct audit_event audit_event;
	struct python_stats python_stats;
	enum usdt_specs_limits usdt_specs_limits;
	enum usdt_arg_kind usdt_arg_kind;
	struct usdt_arg_spec usdt_arg_spec;
	struct usdt_spec usdt_spec;
	enum python_stack_limits python_stack_limits;
	enum stack_record_kind stack_record_kind;
	enum stack_record_tag stack_record_tag;
	enum stack_sample_flags stack_sample_flags;
	struct python_frame python_frame;
	struct stack_sample stack_sample;
	enum code_record_flags code_record_flags;
	struct code_record code_record;
	struct python_offsets python_offsets;
	struct python_process python_process;
	struct stack_key stack_key;
	struct stack_counts stack_counts;
};

#ifdef __bpf__
__attribute__((used)) static void usdtrace_abi(struct usdtrace_abi *abi)
{
}
#endif

#endif /* USDTRACE_H */

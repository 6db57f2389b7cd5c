/* SPDX-License-Identifier: MIT */
/*
 * Walking a CPython thread's frames from BPF, for any CPython from 3.10 on, probes or not.
 *
 * A traced process is described by user space (python_processes): where its _PyRuntime and
 * PyCode_Type are, and which layout (python_layouts, struct python_offsets) reads its version.
 * A thread's PyThreadState is found in the interpreters' thread lists by its id, and cached by
 * tid; every use of the cache checks the id again, so a thread state freed and reused is never
 * taken for another thread's. From it the frames chain innermost first; each frame is its code
 * object's id and its offset into the code's instructions (user space finds the line).
 *
 * A code object is named once: the first stack that holds it reads its file, its (qualified)
 * name and its line table into a CODE record under a new id, and only then is the id kept
 * (known_codes), so any record naming the id follows the CODE record in the ring. The type of
 * every object is checked against the process's PyCode_Type before anything is read through it.
 * When CPython frees a code object (code_dealloc, hooked by forget_code), its id is dropped
 * here and a FORGET record tells user space: memory reused by another code object is named
 * afresh, never under the old names. Ids are never reused.
 *
 * Reads go through read_user(): the current task's memory (bpf_probe_read_user) in the sampling
 * programs, another task's (bpf_copy_from_user_task) in the sleepable dump iterator. Which one is
 * known to the verifier as a constant in each program, so each verifies only its own. Records go
 * to the `events` ring, or to the iterator's seq_file when there is one.
 */
#ifndef PYTHON_STACK_BPF_H
#define PYTHON_STACK_BPF_H

#include <bpf/bpf_core_read.h>
#include "usdtrace.h"
#include "current.bpf.h"
#include "ringbuf.bpf.h"

/*
 * Thread states a lookup visits, over every interpreter, before it gives up (counted): a sample
 * runs in an interrupt, where a few thousand reads is already long; a dump runs in a task that
 * may sleep, and visits every thread a process can have. New threads are at the front of the
 * lists, and a thread once found is cached, so only old threads of crowded processes are missed.
 */
#define THREAD_SEARCH_MAX 4096
#define THREAD_SEARCH_DUMP_MAX (1 << 20)
/* Frames a walk visits: the frames kept plus the C-stack shims that 3.12 and later interleave. */
#define FRAME_VISITS_MAX (2 * STACK_FRAMES_MAX + 2)
/* The most a frame or code object window read takes: their fields up to the last one needed. */
#define OBJECT_WINDOW 256
#define UNKNOWN_OFFSET 0xffffffffu

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PYTHON_LAYOUTS_MAX);
	__type(key, __u32);
	__type(value, struct python_offsets);
} python_layouts SEC(".maps");

/* Sized by user space to the processes traced (with { binary }: how many may run at once). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct python_process);
} python_processes SEC(".maps");

/* tid -> its PyThreadState, checked at every use. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u64);
} thread_states SEC(".maps");

struct code_key {
	__u64 code;
	__u32 tgid;
	__u32 reserved;
};

struct known_code {
	__u32 id;
	/* _co_firsttraceable in bytes: a frame short of it has not started (CPython hides it). */
	__u32 first_traceable;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1 << 18);
	__type(key, struct code_key);
	__type(value, struct known_code);
} known_codes SEC(".maps");

/* A CODE record as it is built: the names at fixed places, then the line table. */
struct code_scratch {
	struct code_record record;
	char file[USDTRACE_NAME_MAX];
	char func[USDTRACE_NAME_MAX];
	__u8 linetable[LINETABLE_MAX];
	__u8 window[OBJECT_WINDOW];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct code_scratch);
} code_scratch SEC(".maps");

/* Ids handed out so far; 0 is never an id (a frame whose code could not be named has it). */
__u32 last_code_id = 0;
/* Frames whose code object could not be named (known_codes full): they arrive as code id 0. */
__u64 unnamed_frames = 0;
/* Samples of a thread whose state the search did not reach within THREAD_SEARCH_MAX. */
__u64 dropped_unfound_threads = 0;

/* Everything a walk needs; lives on the program's stack and is handed to bpf_loop callbacks. */
struct stack_walk {
	/* The task whose memory is read when it is not the current one (the dump iterator). */
	struct task_struct *task;
	/* Where records go in the dump iterator; NULL: the events ring. */
	struct seq_file *seq;
	const struct python_offsets *layout;
	const struct python_process *process;
	struct python_frame *frames;
	__u64 frame;
	__u64 interpreter;
	__u64 thread;
	/* The search's answer: the thread state whose id is wanted_id, or 0. */
	__u64 found;
	__u64 wanted_id;
	__u32 tgid;
	__u16 depth;
	__u8 flags;
};

static __always_inline long read_user(const struct stack_walk *walk, void *dst, __u32 size, __u64 src)
{
	if (walk->task)
		return bpf_copy_from_user_task(dst, size, (const void *)src, walk->task, 0);
	return bpf_probe_read_user(dst, size, (const void *)src);
}

static __always_inline __u64 read_walk_pointer(const struct stack_walk *walk, __u64 address)
{
	__u64 value = 0;

	if (read_user(walk, &value, sizeof(value), address))
		return 0;
	return value;
}

/* A size from the layout, clamped so the verifier sees it fit the buffer. */
static __always_inline __u32 at_most(__u32 size, __u32 limit)
{
	return size > limit ? limit : size;
}

/* A field of a window read from memory, at a layout's offset (masked for the verifier). */
#define WINDOW_U64(window, offset) (*(__u64 *)((window) + ((offset) & (OBJECT_WINDOW - 8))))
#define WINDOW_S32(window, offset) (*(__s32 *)((window) + ((offset) & (OBJECT_WINDOW - 4))))

/* Sends a record to the ring, or, in the dump iterator, writes it length first to its seq_file. */
static __always_inline int emit_record(const struct stack_walk *walk, void *record, __u32 size)
{
	if (walk->seq) {
		__u32 length = size;

		if (bpf_seq_write(walk->seq, &length, sizeof(length)) || size > sizeof(struct code_scratch))
			return -1;
		return bpf_seq_write(walk->seq, record, size);
	}
	if (bpf_ringbuf_output(&events, record, size, wakeup_flag(size))) {
		__sync_fetch_and_add(&dropped_ring_full, 1);
		return -1;
	}
	return 0;
}

static __always_inline void send_forget(const struct stack_walk *walk, __u32 id, __u32 tgid)
{
	struct code_record forget = { .kind = STACK_RECORD_FORGET, .tag = STACK_RECORD_TAG, .id = id, .pid = tgid };

	emit_record(walk, &forget, sizeof(forget));
}

/* Reads a str's text into dst (its own encoding, cut to USDTRACE_NAME_MAX bytes); returns the byte count. */
static __always_inline __u16 read_text(const struct stack_walk *walk, char *dst, __u64 str, __u8 *kind, __u8 *flags,
				       __u8 truncated_flag)
{
	const struct python_offsets *layout = walk->layout;
	__u64 length = 0, bytes, data;
	__u32 state = 0;

	*kind = 0;
	if (!str || read_user(walk, &state, sizeof(state), str + layout->unicode_state) ||
	    read_user(walk, &length, sizeof(length), str + layout->unicode_length))
		return 0;
	/* PyASCIIObject.state: interned:2, kind:3, compact:1, ascii:1 (the same bits in 3.10 to 3.13). */
	if (!(state & (1 << 5)))
		return 0;
	*kind = (state >> 2) & 7;
	data = str + (state & (1 << 6) ? layout->unicode_ascii_data : layout->unicode_compact_data);
	bytes = length * *kind;
	if (bytes > USDTRACE_NAME_MAX) {
		*flags |= truncated_flag;
		bytes = USDTRACE_NAME_MAX;
	}
	if (*kind == 0 || *kind == 3 || *kind > 4 || read_user(walk, dst, bytes, data)) {
		*kind = 0;
		return 0;
	}
	return bytes;
}

/* What learn_code found at a frame's code pointer. */
enum code_lookup {
	CODE_NAMED,    /* an id: the code object is named */
	CODE_UNNAMED,  /* a code object that could not be named now (counted) */
	CODE_NOT_CODE, /* not a code object: a frame CPython does not show (the C-stack shims of 3.12 on) */
};

/*
 * Names a code object not seen before in this process: reads it into a CODE record under a new
 * id, sends the record, then keeps the id in *learnt.
 */
static __always_inline enum code_lookup learn_code(const struct stack_walk *walk, const struct code_key *key,
						   struct known_code *learnt)
{
	const struct python_offsets *layout = walk->layout;
	struct code_scratch *scratch;
	struct code_record *record;
	struct known_code *known;
	__u32 zero = 0, size;
	__u64 linetable, linetable_len = 0;

	scratch = bpf_map_lookup_elem(&code_scratch, &zero);
	if (!scratch)
		return CODE_UNNAMED;
	if (read_user(walk, scratch->window, at_most(layout->code_window, OBJECT_WINDOW), key->code))
		return CODE_UNNAMED;
	if (WINDOW_U64(scratch->window, layout->object_type) != walk->process->code_type)
		return CODE_NOT_CODE;
	record = &scratch->record;
	__builtin_memset(record, 0, sizeof(*record));
	record->kind = STACK_RECORD_CODE;
	record->tag = STACK_RECORD_TAG;
	record->pid = key->tgid;
	record->first_line = WINDOW_S32(scratch->window, layout->code_first_line);
	learnt->first_traceable = 0;
	if (layout->code_first_traceable != LAYOUT_NONE)
		learnt->first_traceable = 2 * WINDOW_S32(scratch->window, layout->code_first_traceable);
	linetable = WINDOW_U64(scratch->window, layout->code_linetable);
	record->file_len = read_text(walk, scratch->file, WINDOW_U64(scratch->window, layout->code_filename),
				     &record->file_kind, &record->flags, CODE_FILE_TRUNCATED);
	record->func_len = read_text(walk, scratch->func, WINDOW_U64(scratch->window, layout->code_name),
				     &record->func_kind, &record->flags, CODE_FUNC_TRUNCATED);
	if (linetable && !read_user(walk, &linetable_len, sizeof(linetable_len), linetable + layout->bytes_size)) {
		if (linetable_len > LINETABLE_MAX) {
			record->flags |= CODE_LINETABLE_TRUNCATED;
			linetable_len = LINETABLE_MAX;
		}
		if (read_user(walk, scratch->linetable, linetable_len, linetable + layout->bytes_data))
			linetable_len = 0;
	}
	record->linetable_len = linetable_len;
	record->id = __sync_fetch_and_add(&last_code_id, 1) + 1;
	learnt->id = record->id;
	size = offsetof(struct code_scratch, linetable) + record->linetable_len;
	if (size > offsetof(struct code_scratch, window) || emit_record(walk, record, size))
		return CODE_UNNAMED;
	/* Another CPU may have learnt it meanwhile: its id is kept, and this one is forgotten at once. */
	if (bpf_map_update_elem(&known_codes, key, learnt, BPF_NOEXIST)) {
		send_forget(walk, learnt->id, key->tgid);
		known = bpf_map_lookup_elem(&known_codes, key);
		if (!known)
			return CODE_UNNAMED;
		*learnt = *known;
	}
	return CODE_NAMED;
}

static long search_thread(__u32 index, struct stack_walk *walk)
{
	const struct python_offsets *layout = walk->layout;
	__u64 id = 0;

	/* At the end of an interpreter's threads, on to the next interpreter's. */
	if (!walk->thread) {
		if (!walk->interpreter)
			return 1;
		walk->thread = read_walk_pointer(walk, walk->interpreter + layout->interpreter_threads);
		walk->interpreter = read_walk_pointer(walk, walk->interpreter + layout->interpreter_next);
		return 0;
	}
	if (read_user(walk, &id, sizeof(id), walk->thread + layout->thread_id))
		return 1;
	if (id == walk->wanted_id) {
		walk->found = walk->thread;
		return 1;
	}
	walk->thread = read_walk_pointer(walk, walk->thread + layout->thread_next);
	return 0;
}

/* What a thread state holds as its thread's id: the kernel tid, or 3.10's pthread (the fs base on x86-64). */
static __always_inline __u64 thread_identity(const struct python_offsets *layout, struct task_struct *task)
{
#if defined(__TARGET_ARCH_x86)
	if (layout->thread_id_is_pthread)
		return BPF_CORE_READ(task, thread.fsbase);
#endif
	return BPF_CORE_READ(task, pid);
}

/* The task's PyThreadState into walk->thread (0: not a Python thread, or not found and counted). */
static __always_inline void find_thread_state(struct stack_walk *walk, struct task_struct *task)
{
	__u32 tid = BPF_CORE_READ(task, pid);
	__u64 *cached = bpf_map_lookup_elem(&thread_states, &tid);
	__u64 id = 0;

	walk->wanted_id = thread_identity(walk->layout, task);
	if (cached && *cached && !read_user(walk, &id, sizeof(id), *cached + walk->layout->thread_id) &&
	    id == walk->wanted_id) {
		walk->thread = *cached;
		return;
	}
	walk->thread = 0;
	walk->found = 0;
	walk->interpreter = read_walk_pointer(walk, walk->process->runtime + walk->layout->runtime_interpreters);
	bpf_loop(walk->task ? THREAD_SEARCH_DUMP_MAX : THREAD_SEARCH_MAX, search_thread, walk, 0);
	/*
	 * A thread that never ran Python has no state: that is not a loss, unless the search stopped
	 * with thread states left to look at (too many, or one unreadable).
	 */
	if (!walk->found && (walk->thread || walk->interpreter))
		__sync_fetch_and_add(&dropped_unfound_threads, 1);
	walk->thread = walk->found;
	if (walk->thread)
		bpf_map_update_elem(&thread_states, &tid, &walk->thread, BPF_ANY);
}

/* The code object's id and first traceable offset, learnt now if need be. */
static __always_inline enum code_lookup code_of(const struct stack_walk *walk, __u64 code, struct known_code *found)
{
	struct code_key key = { .code = code, .tgid = walk->tgid };
	struct known_code *known = bpf_map_lookup_elem(&known_codes, &key);
	enum code_lookup lookup;

	if (known) {
		*found = *known;
		return CODE_NAMED;
	}
	lookup = learn_code(walk, &key, found);
	if (lookup == CODE_UNNAMED) {
		__sync_fetch_and_add(&unnamed_frames, 1);
		found->id = 0;
		found->first_traceable = 0;
	}
	return lookup;
}

static long walk_frame(__u32 index, struct stack_walk *walk)
{
	const struct python_offsets *layout = walk->layout;
	__u32 offset, depth = walk->depth, zero = 0;
	struct code_scratch *scratch;
	struct known_code code_info;
	__u64 code, instruction;
	__u8 owner = 0;

	if (!walk->frame)
		return 1;
	if (depth >= STACK_FRAMES_MAX) {
		walk->flags |= SAMPLE_TRUNCATED;
		return 1;
	}
	/*
	 * The frame is read into the scratch's window, not onto this callback's stack (the programs
	 * that carry stacks have little stack to spare); learn_code reuses the window, after the
	 * frame's fields are taken out of it.
	 */
	scratch = bpf_map_lookup_elem(&code_scratch, &zero);
	if (!scratch || read_user(walk, scratch->window, at_most(layout->frame_window, OBJECT_WINDOW), walk->frame)) {
		walk->flags |= SAMPLE_UNREADABLE;
		return 1;
	}
	code = WINDOW_U64(scratch->window, layout->frame_code);
	instruction = WINDOW_U64(scratch->window, layout->frame_instruction);
	walk->frame = WINDOW_U64(scratch->window, layout->frame_previous);
	if (layout->frame_owner != LAYOUT_NONE) {
		owner = scratch->window[layout->frame_owner & (OBJECT_WINDOW - 1)];
		if (owner == layout->owner_cstack)
			return 0;
	}
	if (layout->instruction_is_index)
		offset = (__s32)instruction < 0 ? UNKNOWN_OFFSET : 2 * (__u32)(__s32)instruction;
	else
		offset = instruction - (code + layout->code_instructions);
	if (code_of(walk, code, &code_info) == CODE_NOT_CODE)
		return 0;
	/* Not started yet: CPython's own stacks leave it out. */
	if (owner != layout->owner_generator && offset < code_info.first_traceable)
		return 0;
	walk->frames[depth].code_id = code_info.id;
	walk->frames[depth].offset = offset;
	walk->depth = depth + 1;
	return 0;
}

/* Walks the thread's frames into walk->frames, innermost first: depth and flags say how it went. */
static __always_inline void walk_frames(struct stack_walk *walk)
{
	const struct python_offsets *layout = walk->layout;

	walk->depth = 0;
	walk->frame = read_walk_pointer(walk, walk->thread + layout->thread_frame);
	if (walk->frame && layout->cframe_current_frame != LAYOUT_NONE)
		walk->frame = read_walk_pointer(walk, walk->frame + layout->cframe_current_frame);
	bpf_loop(FRAME_VISITS_MAX, walk_frame, walk, 0);
	if (walk->frame && !(walk->flags & (SAMPLE_TRUNCATED | SAMPLE_UNREADABLE)))
		walk->flags |= SAMPLE_TRUNCATED;
}

/*
 * Sets up a walk of `task`'s stack, a thread of a traced process; false when the process is not
 * traced or the thread has no Python state.
 */
static __always_inline bool start_walk(struct stack_walk *walk, struct task_struct *task, __u32 tgid)
{
	__u32 index;

	walk->tgid = tgid;
	walk->process = bpf_map_lookup_elem(&python_processes, &tgid);
	if (!walk->process)
		return false;
	index = walk->process->layout;
	walk->layout = bpf_map_lookup_elem(&python_layouts, &index);
	if (!walk->layout)
		return false;
	find_thread_state(walk, task);
	return walk->thread != 0;
}

/* CPython is freeing the code object: its id goes, here and in user space. */
static __always_inline void forget_dying_code(const struct stack_walk *walk, __u64 code, __u32 tgid)
{
	struct code_key key = { .code = code, .tgid = tgid };
	struct known_code *known = bpf_map_lookup_elem(&known_codes, &key);
	__u32 id;

	if (!known)
		return;
	id = known->id;
	bpf_map_delete_elem(&known_codes, &key);
	send_forget(walk, id, tgid);
}

/* A stack as a record: its header, then its frames (only `depth` of them are sent). */
struct sample_record {
	struct stack_sample sample;
	struct python_frame frames[STACK_FRAMES_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample_record);
} sample_scratch SEC(".maps");

static __always_inline struct sample_record *sample_scratch_record(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sample_scratch, &zero);
}

/* Fills a stack record's header; the frames are already in place. */
static __always_inline void describe_stack(struct stack_sample *sample, __u8 kind, __u8 flags, __u32 tgid, __u32 tid,
					   __u16 depth, __u64 timestamp_ns)
{
	sample->kind = kind;
	sample->flags = flags;
	sample->depth = depth;
	sample->tag = STACK_RECORD_TAG;
	sample->pid = tgid;
	sample->tid = tid;
	sample->cpu = bpf_get_smp_processor_id();
	sample->reserved = 0;
	sample->timestamp_ns = timestamp_ns;
	sample->off_cpu_ns = 0;
}

/* Sends a record of `kind` that is only its header, about process `tgid` (STACK_RECORD_PROCESS, _EXIT). */
static __always_inline void send_process_record(__u8 kind, __u32 tgid)
{
	struct stack_sample *record = reserve_event(sizeof(*record));

	if (!record)
		return;
	describe_stack(record, kind, 0, tgid, 0, 0, 0);
	commit_event(record, sizeof(*record));
}

/* With { binary }: processes appear as they start, and user space is asked to describe them. */
const volatile bool follow_binary = false;

/* With { binary }: processes user space was asked about, so each is asked about once. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} asked_processes SEC(".maps");

/* Asks user space, once, whether a process it has not described is one of the binary's. */
static __always_inline void ask_about(__u32 tgid)
{
	__u8 asked = 1;

	if (!follow_binary || bpf_map_lookup_elem(&asked_processes, &tgid))
		return;
	if (bpf_map_update_elem(&asked_processes, &tgid, &asked, BPF_NOEXIST))
		return;
	send_process_record(STACK_RECORD_PROCESS, tgid);
}

/*
 * Walks the current task's Python stack into `frames`; false (and the process asked about, with
 * { binary }) when it is not a traced Python thread. *depth and *flags say how the walk went.
 */
static __always_inline bool walk_current_stack(struct task_struct *task, struct python_frame *frames, __u16 *depth,
					       __u8 *flags)
{
	struct stack_walk walk = {};
	__u32 tgid = task->tgid;

	if (!bpf_map_lookup_elem(&python_processes, &tgid)) {
		ask_about(tgid);
		return false;
	}
	walk.frames = frames;
	walk.flags = *flags;
	if (!start_walk(&walk, task, tgid))
		return false;
	walk_frames(&walk);
	*depth = walk.depth;
	*flags = walk.flags;
	return true;
}

/* Whether the stream attaches the Python stack to its events; set by user space before load. */
const volatile bool with_stacks = false;

/*
 * The current thread's Python stack, sent just before an event of another stream whose
 * timestamp is `event_ns` (a STACK_RECORD_FRAMES record): user space gives it to that event.
 */
static __always_inline void send_event_stack(__u64 event_ns)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct sample_record *record;
	__u8 flags = 0;
	__u16 depth = 0;

	if (!with_stacks)
		return;
	record = sample_scratch_record();
	if (!record || !walk_current_stack(task, record->frames, &depth, &flags) || depth > STACK_FRAMES_MAX)
		return;
	describe_stack(&record->sample, STACK_RECORD_FRAMES, flags, task->tgid, task->pid, depth, event_ns);
	submit_event(record, sizeof(record->sample) + depth * sizeof(struct python_frame));
}

/* CPython's code_dealloc, with the dying code object as its argument. */
SEC("uprobe")
int forget_code(struct pt_regs *ctx)
{
	struct stack_walk walk = {};

	forget_dying_code(&walk, PT_REGS_PARM1(ctx), current_pid_tgid() >> 32);
	return 0;
}

#endif /* PYTHON_STACK_BPF_H */

/* SPDX-License-Identifier: MIT */
/*
 * Each thread's stack of open frames, at any depth. An entry pushes a frame and its return pops
 * it, so the return finds what the entry kept (its kernel timestamp) and is timed exactly, however
 * deep it ran. The including object defines `struct frame`, what it keeps per open frame, and
 * frees the thread's stack with forget_stack() in its forget_thread_state (thread_state.bpf.h).
 *
 * The first INLINE_FRAMES frames live in the thread's own entry of `threads`, the value the probe
 * looks up anyway: a frame there costs an index and one compare, as when that was all there was.
 * Deeper frames live in pages of PAGE_FRAMES in `frame_pages`, keyed by thread and page number,
 * and cost a lookup each; programs rarely recurse that deep, and a lookup is cheap next to the
 * record the call sends. A page is made as the thread goes down into it and freed as the thread
 * comes back up, but one spare page is kept past the deepest open frame, so that a recursion moving
 * up and down across a page's edge does not make and free a page at every call. An empty stack holds
 * no page, and an exiting thread gives back whatever it held.
 *
 * Nothing goes silently: a frame that finds no room (no page to be had: dropped_deep_frames; no
 * entry for the thread: dropped_thread_slots) still counts in the depth, and its return arrives
 * without a time.
 */
#ifndef USDTRACE_THREAD_STACK_BPF_H
#define USDTRACE_THREAD_STACK_BPF_H

#include "thread_state.bpf.h"

/* Powers of two: a depth splits into page and slot by shift and mask. */
#define INLINE_FRAMES 256
#define PAGE_FRAMES 256
/* Pages of all threads together: 2 million frames below the inline ones. */
#define MAX_FRAME_PAGES 8192

struct thread_stack {
	__u32 depth; /* frames open: entries whose return has not come */
	__u32 pages; /* pages held in frame_pages, numbered 0 to pages - 1 */
	struct frame frames[INLINE_FRAMES];
};

struct page_key {
	__u32 tid;
	__u32 page;
};

struct frame_page {
	struct frame frames[PAGE_FRAMES];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct thread_stack);
} threads SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, MAX_FRAME_PAGES);
	__type(key, struct page_key);
	__type(value, struct frame_page);
} frame_pages SEC(".maps");

/* Frames deeper than INLINE_FRAMES that found no page: their returns arrive untimed. */
__u64 dropped_deep_frames = 0;

static const struct thread_stack empty_stack;
static const struct frame_page empty_page;

/* The thread's stack; with `create`, made on its first use (NULL, counted, when there is no room). */
static __always_inline struct thread_stack *stack_of(__u32 tid, bool create)
{
	return create ? thread_state(&threads, tid, &empty_stack) : bpf_map_lookup_elem(&threads, &tid);
}

/*
 * The frame at `depth` (INLINE_FRAMES or deeper) in the thread's pages; NULL when its page is not
 * held. With `open`, the frame is being pushed: the first frame of a page makes that page.
 */
static __always_inline struct frame *paged_frame(struct thread_stack *stack, __u32 tid, __u32 depth, bool open)
{
	__u32 at = depth - INLINE_FRAMES;
	struct page_key key = { .tid = tid, .page = at / PAGE_FRAMES };
	struct frame_page *page = NULL;

	if (key.page < stack->pages) {
		page = bpf_map_lookup_elem(&frame_pages, &key);
	} else if (open && key.page == stack->pages && at % PAGE_FRAMES == 0) {
		/* Only this thread writes its pages: whatever is under the key is a stale page to replace. */
		bpf_map_update_elem(&frame_pages, &key, &empty_page, BPF_ANY);
		page = bpf_map_lookup_elem(&frame_pages, &key);
		if (page)
			stack->pages++;
	}
	if (!page)
		return NULL;
	/* Else clang indexes before the test, and the verifier refuses arithmetic on a maybe-NULL pointer. */
	barrier_var(page);
	return &page->frames[at % PAGE_FRAMES];
}

/* The frame at `depth`, wherever it lives; NULL when it was not kept. */
static __always_inline struct frame *frame_at(struct thread_stack *stack, __u32 tid, __u32 depth)
{
	if (depth < INLINE_FRAMES)
		return &stack->frames[depth & (INLINE_FRAMES - 1)];
	return paged_frame(stack, tid, depth, false);
}

/*
 * Opens a frame at the thread's depth and returns where to keep what the entry knows; NULL
 * (counted) when it has no room. Either way the frame counts in the depth.
 */
static __always_inline struct frame *push_frame(struct thread_stack *stack, __u32 tid)
{
	__u32 depth = stack->depth;
	struct frame *frame;

	stack->depth = depth + 1;
	if (depth < INLINE_FRAMES)
		return &stack->frames[depth & (INLINE_FRAMES - 1)];
	frame = paged_frame(stack, tid, depth, true);
	if (!frame)
		__sync_fetch_and_add(&dropped_deep_frames, 1);
	return frame;
}

/*
 * Closing the first frame of page `page` (-1: of the inline frames) empties that page: the spare
 * past it goes, and the emptied page becomes the spare. Only ever the last page held goes, so
 * `pages` always counts every page the thread holds.
 */
static __always_inline void release_spare(struct thread_stack *stack, __u32 tid, __s64 page)
{
	struct page_key key = { .tid = tid, .page = page + 1 };

	if (stack->pages != page + 2)
		return;
	bpf_map_delete_elem(&frame_pages, &key);
	stack->pages = page + 1;
}

/*
 * Closes the thread's innermost frame and returns it, with its depth in *depth; NULL when it
 * was not kept, or when no frame is open (a return whose entry came before the trace: depth 0).
 */
static __always_inline struct frame *pop_frame(struct thread_stack *stack, __u32 tid, __u32 *depth)
{
	__u32 at;
	struct frame *frame;

	*depth = 0;
	if (stack->depth == 0)
		return NULL;
	*depth = --stack->depth;
	if (*depth < INLINE_FRAMES) {
		/* An empty stack holds no page. */
		if (*depth == 0 && stack->pages)
			release_spare(stack, tid, -1);
		return &stack->frames[*depth & (INLINE_FRAMES - 1)];
	}
	at = *depth - INLINE_FRAMES;
	frame = paged_frame(stack, tid, *depth, false);
	if (at % PAGE_FRAMES == 0)
		release_spare(stack, tid, at / PAGE_FRAMES);
	return frame;
}

static long forget_page(__u64 page, void *tid)
{
	struct page_key key = { .tid = *(__u32 *)tid, .page = page };

	bpf_map_delete_elem(&frame_pages, &key);
	return 0;
}

/* Frees the thread's stack and its pages: for forget_thread_state, as the thread exits. */
static __always_inline void forget_stack(__u32 tid)
{
	struct thread_stack *stack = bpf_map_lookup_elem(&threads, &tid);

	if (!stack)
		return;
	if (stack->pages)
		bpf_loop(stack->pages, forget_page, &tid, 0);
	bpf_map_delete_elem(&threads, &tid);
}

#endif /* USDTRACE_THREAD_STACK_BPF_H */

// The C reference points of the benchmarks, on the same embedded BPF object as the addon:
//   reference floor PID PATH [RING]  an empty BPF program on python:function__return (the uprobe alone)
//   reference drain PID PATH [RING]  the addon's on_call_return program and ring buffer, drained in C
// Both print "attached", run until stdin closes, then (drain) print "<events> <lost>".
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include "calls.skel.h"

static unsigned long long events;

static int count_event(void *ctx, void *data, size_t size)
{
	events++;
	return 0;
}

static int quiet(enum libbpf_print_level level, const char *format, va_list args)
{
	return level == LIBBPF_WARN ? vfprintf(stderr, format, args) : 0;
}

int main(int argc, char **argv)
{
	if (argc < 4 || (strcmp(argv[1], "floor") && strcmp(argv[1], "drain"))) {
		fprintf(stderr, "usage: %s floor|drain PID PATH [RING_BYTES]\n", argv[0]);
		return 2;
	}
	int drain = !strcmp(argv[1], "drain");
	int pid = atoi(argv[2]);
	libbpf_set_print(quiet);

	struct calls *skel = calls__open();
	if (!skel)
		return 1;
	bpf_map__set_max_entries(skel->maps.events, argc > 4 ? atoi(argv[4]) : 8 << 20);
	skel->rodata->wakeup_bytes = bpf_map__max_entries(skel->maps.events) / 8;
	if (calls__load(skel))
		return 1;
	struct bpf_program *program = drain ? skel->progs.on_call_return : skel->progs.hold_semaphore;
	struct bpf_link *link = bpf_program__attach_usdt(program, pid, argv[3], "python", "function__return", NULL);
	if (!link) {
		perror("attach");
		return 1;
	}
	struct ring_buffer *ring = ring_buffer__new(bpf_map__fd(skel->maps.events), count_event, NULL, NULL);
	printf("attached\n");
	fflush(stdout);

	// Same cadence as the addon: wake on the BPF side's threshold, else every 5 ms.
	struct pollfd input = { .fd = 0, .events = POLLIN };
	while (poll(&input, 1, 0) == 0 || !(input.revents & (POLLIN | POLLHUP))) {
		ring_buffer__poll(ring, 5);
		ring_buffer__consume(ring);
	}
	ring_buffer__consume(ring);
	if (drain)
		printf("%llu %llu\n", events, (unsigned long long)skel->bss->dropped_ring_full);
	bpf_link__destroy(link);
	ring_buffer__free(ring);
	calls__destroy(skel);
	return 0;
}

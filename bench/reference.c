// The C reference points of the benchmarks, on the same embedded BPF object as the addon:
//   reference floor PID PATH RING SPEC SITE...  an empty BPF program on python:function__return (the uprobe alone)
//   reference drain PID PATH RING SPEC SITE...  the addon's on_call_return program and ring buffer, drained in C
// SPEC is the probe's usdt_spec in hex, as src/usdt-args.ts encodes it; each SITE is
// FILE_OFFSET:SEMAPHORE_FILE_OFFSET, in decimal. Both attach one perf-event uprobe per site,
// as libbpf's bpf_program__attach_usdt does (loaded without the uprobe_multi attach type), print
// "attached", run until stdin closes, then (drain) print "<events> <lost>".
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
	if (argc < 7 || (strcmp(argv[1], "floor") && strcmp(argv[1], "drain"))) {
		fprintf(stderr, "usage: %s floor|drain PID PATH RING_BYTES SPEC_HEX FILE_OFFSET:SEMAPHORE_OFFSET...\n", argv[0]);
		return 2;
	}
	int drain = !strcmp(argv[1], "drain");
	int pid = atoi(argv[2]);
	libbpf_set_print(quiet);

	struct calls *skel = calls__open();
	if (!skel)
		return 1;
	bpf_map__set_max_entries(skel->maps.events, atoi(argv[4]));
	skel->rodata->wakeup_bytes = bpf_map__max_entries(skel->maps.events) / 8;
	if (calls__load(skel))
		return 1;
	// The spec goes into slot 0, which every site's cookie (0) names.
	unsigned char spec[1024] = {0};
	size_t spec_size = bpf_map__value_size(skel->maps.usdt_specs);
	if (strlen(argv[5]) != 2 * spec_size || spec_size > sizeof(spec)) {
		fprintf(stderr, "SPEC must be %zu bytes in hex\n", spec_size);
		return 2;
	}
	for (size_t i = 0; i < spec_size; i++)
		sscanf(argv[5] + 2 * i, "%2hhx", &spec[i]);
	__u32 slot = 0;
	if (bpf_map__update_elem(skel->maps.usdt_specs, &slot, sizeof(slot), spec, spec_size, BPF_ANY))
		return 1;

	struct bpf_program *program = drain ? skel->progs.on_call_return : skel->progs.hold_semaphore;
	int site_count = argc - 6;
	struct bpf_link *links[site_count];
	for (int i = 0; i < site_count; i++) {
		unsigned long long offset, semaphore;
		if (sscanf(argv[6 + i], "%llu:%llu", &offset, &semaphore) != 2) {
			fprintf(stderr, "bad site %s\n", argv[6 + i]);
			return 2;
		}
		LIBBPF_OPTS(bpf_uprobe_opts, options, .ref_ctr_offset = semaphore, .bpf_cookie = 0);
		links[i] = bpf_program__attach_uprobe_opts(program, pid, argv[3], offset, &options);
		if (!links[i]) {
			perror("attach");
			return 1;
		}
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
	for (int i = 0; i < site_count; i++)
		bpf_link__destroy(links[i]);
	ring_buffer__free(ring);
	calls__destroy(skel);
	return 0;
}

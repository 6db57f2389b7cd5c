// The C reference points of the benchmarks, on the BPF object the addon embeds (calls.skel.h):
//   reference floor   ...  an empty BPF program (hold_semaphore) on python:function__return:
//                          the uprobe alone
//   reference drain   ...  on_call_return and its ring buffer, consumed as records arrive
//   reference backlog ...  the same, but nothing is consumed until a line arrives on stdin; the
//                          ring is then drained once, timed
// Arguments: MODE PID PATH RING_BYTES SPEC_HEX SITE... [CONSTANT=HEX...]; PID -1 traces every process running PATH.
// SPEC_HEX is the probe's usdt_spec, as src/kernel/usdt-args.ts encodes it; each SITE is
// FILE_OFFSET:SEMAPHORE_FILE_OFFSET in decimal; each CONSTANT is a .rodata global set before
// load to the bytes HEX (little-endian), zero-padded to its size as the addon pads them.
// Sites attach as the addon attaches them (native/uprobe_multi.h): one uprobe multi link where
// the kernel has them, else one perf-event uprobe per site, which USDTRACE_UPROBE_MULTI=0 forces.
// The ring is read with libbpf's ring_buffer, as libbpf-tools read theirs; with
// USDTRACE_REFERENCE_READER=addon, with the addon's own reader (native/ring.h) instead.
// Prints "attached uprobe-multi" or "attached perf-event" and runs until stdin closes. Then
// drain prints "<returns> <dropped_ring_full>"; backlog prints
// "<returns> <dropped_ring_full> <seconds>" as soon as its drain is done.
#include <bpf/libbpf.h>
#include <linux/types.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <cinttypes>
#include <string>
#include <vector>

#include "usdtrace.h"
#include "calls.skel.h"
#include "globals.h"
#include "ring.h"
#include "uprobe_multi.h"

namespace {

unsigned long long returns;

// Counts what the addon would yield: returns, not the CALL_NAMES records that name them.
int CountReturn(void* context, const void* data, size_t size) {
  if (static_cast<const struct call_event*>(data)->kind == CALL_RETURN) returns++;
  return 0;
}

int CountReturnFromLibbpf(void* context, void* data, size_t size) { return CountReturn(context, data, size); }

size_t CountReturns(void* context, const RingRecord* records, size_t count) {
  for (size_t i = 0; i < count; i++) CountReturn(context, records[i].data, records[i].size);
  return count;
}

// One of the two ways to read the ring, as USDTRACE_REFERENCE_READER picks.
class Consumer {
 public:
  bool Open(int mapFd) {
    mapFd_ = mapFd;
    const char* reader = getenv("USDTRACE_REFERENCE_READER");
    if (reader && std::string(reader) == "addon") {
      addon_ = std::make_unique<RingReader>();
      return addon_->Open(mapFd) == 0;
    }
    libbpf_ = ring_buffer__new(mapFd, CountReturnFromLibbpf, nullptr, nullptr);
    return libbpf_ != nullptr;
  }
  ~Consumer() {
    if (libbpf_) ring_buffer__free(libbpf_);
  }
  void Consume() {
    if (addon_) addon_->Consume(CountReturns, nullptr);
    else ring_buffer__consume(libbpf_);
  }
  void Poll(int timeoutMs) {
    if (!addon_) {
      ring_buffer__poll(libbpf_, timeoutMs);
      return;
    }
    struct pollfd ready = {mapFd_, POLLIN, 0};
    if (poll(&ready, 1, timeoutMs) > 0) Consume();
  }

 private:
  int mapFd_ = -1;
  struct ring_buffer* libbpf_ = nullptr;
  std::unique_ptr<RingReader> addon_;
};

int Quiet(enum libbpf_print_level level, const char* format, va_list args) {
  return level == LIBBPF_WARN ? vfprintf(stderr, format, args) : 0;
}

bool ParseHex(const char* hex, std::vector<unsigned char>* bytes) {
  size_t length = strlen(hex);
  if (length % 2) return false;
  bytes->resize(length / 2);
  for (size_t i = 0; i < bytes->size(); i++)
    if (sscanf(hex + 2 * i, "%2hhx", &(*bytes)[i]) != 1) return false;
  return true;
}

// NAME=HEX into the skeleton's .rodata, found by name in the object's BTF.
bool SetConstant(struct calls* skel, const char* assignment) {
  const char* equals = strchr(assignment, '=');
  std::vector<unsigned char> value;
  if (!ParseHex(equals + 1, &value)) return false;
  const std::string name(assignment, equals);
  bool found = false;
  ForEachGlobal(skel->obj, ".rodata", [&](const char* var, uint32_t offset, uint32_t size) {
    if (name != var) return;
    unsigned char* at = reinterpret_cast<unsigned char*>(skel->rodata) + offset;
    memset(at, 0, size);
    memcpy(at, value.data(), std::min<size_t>(value.size(), size));
    found = true;
  });
  return found;
}

double Now() {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return now.tv_sec + now.tv_nsec / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc < 7 || (mode != "floor" && mode != "drain" && mode != "backlog")) {
    fprintf(stderr, "usage: %s floor|drain|backlog PID PATH RING_BYTES SPEC_HEX SITE... [CONSTANT=HEX...]\n", argv[0]);
    return 2;
  }
  int pid = atoi(argv[2]);
  const char* path = argv[3];
  libbpf_set_print(Quiet);

  struct calls* skel = calls__open();
  if (!skel) return 1;
  bpf_map__set_max_entries(skel->maps.events, atoi(argv[4]));
  std::vector<UprobeSite> sites;
  for (int i = 6; i < argc; i++) {
    bool parsed;
    if (strchr(argv[i], '=')) {
      parsed = SetConstant(skel, argv[i]);
    } else {
      UprobeSite site = {0, 0, 0};  // cookie 0: the spec's slot in usdt_specs
      parsed = sscanf(argv[i], "%" SCNu64 ":%" SCNu64, &site.fileOffset, &site.refCtrOffset) == 2;
      sites.push_back(site);
    }
    if (!parsed) {
      fprintf(stderr, "bad site or constant %s\n", argv[i]);
      return 2;
    }
  }
  struct bpf_program* program = mode == "floor" ? skel->progs.hold_semaphore : skel->progs.on_call_return;
  const bool multi = UprobeMultiSupported();
  if (multi) bpf_program__set_expected_attach_type(program, static_cast<enum bpf_attach_type>(kUprobeMultiAttachType));
  if (calls__load(skel)) return 1;

  std::vector<unsigned char> spec;
  __u32 slot = 0;
  if (!ParseHex(argv[5], &spec) || spec.size() != bpf_map__value_size(skel->maps.usdt_specs)) {
    fprintf(stderr, "SPEC must be %u bytes in hex\n", bpf_map__value_size(skel->maps.usdt_specs));
    return 2;
  }
  if (bpf_map__update_elem(skel->maps.usdt_specs, &slot, sizeof(slot), spec.data(), spec.size(), BPF_ANY)) return 1;

  int multiLink = -1;
  std::vector<struct bpf_link*> perfLinks;
  if (multi) {
    multiLink = AttachUprobeMulti(bpf_program__fd(program), pid, path, sites, false);
    if (multiLink < 0) {
      fprintf(stderr, "attach: %s\n", strerror(-multiLink));
      return 1;
    }
  } else {
    for (const UprobeSite& site : sites) {
      LIBBPF_OPTS(bpf_uprobe_opts, options, .ref_ctr_offset = site.refCtrOffset, .bpf_cookie = site.cookie);
      perfLinks.push_back(bpf_program__attach_uprobe_opts(program, pid, path, site.fileOffset, &options));
      if (!perfLinks.back()) {
        perror("attach");
        return 1;
      }
    }
  }
  Consumer ring;
  if (!ring.Open(bpf_map__fd(skel->maps.events))) {
    perror("ring");
    return 1;
  }
  printf("attached %s\n", multi ? "uprobe-multi" : "perf-event");
  fflush(stdout);

  if (mode == "backlog") {
    char byte;
    while (read(0, &byte, 1) == 1 && byte != '\n') {
    }
    double start = Now();
    // Nothing arrives any more: one consume takes every record there is.
    ring.Consume();
    printf("%llu %llu %.6f\n", returns, static_cast<unsigned long long>(skel->bss->dropped_ring_full), Now() - start);
    fflush(stdout);
  }
  // Same cadence as the addon: wake on the BPF side's threshold, else every 5 ms.
  struct pollfd input = {0, POLLIN, 0};
  while (poll(&input, 1, 0) == 0 || !(input.revents & (POLLIN | POLLHUP))) {
    ring.Poll(5);
    ring.Consume();
  }
  ring.Consume();
  if (mode == "drain") printf("%llu %llu\n", returns, static_cast<unsigned long long>(skel->bss->dropped_ring_full));
  if (multiLink >= 0) close(multiLink);
  for (struct bpf_link* link : perfLinks) bpf_link__destroy(link);
  calls__destroy(skel);
  return 0;
}

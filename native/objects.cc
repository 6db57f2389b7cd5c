// Each BPF object reaches the addon through its bpftool skeleton, which embeds the ELF bytes; the
// session opens them generically (bpf_object__open_mem), so one attach/drain path serves all.
#include "objects.h"

#include <linux/types.h>

// The skeletons name the structs of their constants (a fixed USDT argument spec).
#include "usdtrace.h"

#include "calls.skel.h"
#include "syscalls.skel.h"
#include "callstats.skel.h"
#include "usdt.skel.h"
#include "libcalls.skel.h"
#include "gc.skel.h"
#include "imports.skel.h"
#include "audit.skel.h"
#include "stats.skel.h"
#include "stacks.skel.h"

namespace {

struct Entry {
  const char* name;
  const void* (*bytes)(size_t* size);
};

const Entry kObjects[] = {
    {"calls", calls__elf_bytes},
    {"syscalls", syscalls__elf_bytes},
    {"callstats", callstats__elf_bytes},
    {"usdt", usdt__elf_bytes},
    {"libcalls", libcalls__elf_bytes},
    {"gc", gc__elf_bytes},
    {"imports", imports__elf_bytes},
    {"audit", audit__elf_bytes},
    {"stats", stats__elf_bytes},
    {"stacks", stacks__elf_bytes},
};

}  // namespace

bool FindEmbeddedObject(const std::string& name, EmbeddedObject* out) {
  for (const Entry& entry : kObjects) {
    if (name == entry.name) {
      out->bytes = entry.bytes(&out->size);
      return true;
    }
  }
  return false;
}

#include "libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <algorithm>
#include <cstdio>
#include <mutex>

namespace {

// Enough for the end of a verifier log, which is where it says what went wrong.
constexpr size_t kKeptBytes = 8192;
// libbpf may log from the detach threads too.
std::mutex keptLock;
std::string kept;

int Keep(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  char line[1024];
  int length = vsnprintf(line, sizeof line, format, args);
  std::lock_guard<std::mutex> guard(keptLock);
  kept.append(line, length < 0 ? 0 : std::min<size_t>(length, sizeof line - 1));
  if (kept.size() > kKeptBytes) kept.erase(0, kept.size() - kKeptBytes);
  return 0;
}

}  // namespace

void CaptureLibbpfLog() { libbpf_set_print(Keep); }

std::string TakeLibbpfLog() {
  std::string log;
  {
    std::lock_guard<std::mutex> guard(keptLock);
    log.swap(kept);
  }
  while (!log.empty() && log.back() == '\n') log.pop_back();
  return log;
}

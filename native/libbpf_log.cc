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

// libbpf hands over a whole verifier log in one message, so a message is measured, not cut.
int Keep(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  va_list measure;
  va_copy(measure, args);
  int length = vsnprintf(nullptr, 0, format, measure);
  va_end(measure);
  if (length <= 0) return 0;
  std::string message(static_cast<size_t>(length) + 1, '\0');
  vsnprintf(message.data(), message.size(), format, args);
  message.pop_back();
  std::lock_guard<std::mutex> guard(keptLock);
  kept += message;
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

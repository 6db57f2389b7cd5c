// Which privilege uprobes need changed with the kernel (CAP_PERFMON from 5.8, CAP_SYS_ADMIN again
// from 6.16 and in the stable updates of July 2025), so doctor() asks the kernel itself:
// perf_event_open on the uprobe PMU checks the capability before it looks at the probe, so an
// attribute without a path fails with EACCES when uprobes are refused and EINVAL when they are not.
#include "uprobe_access.h"

#include <errno.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

Napi::Value UprobeAccess(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsNumber()) {
    Napi::TypeError::New(env, "uprobeAccess(pmuType: number)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  perf_event_attr attr = {};
  attr.size = sizeof(attr);
  attr.type = info[0].As<Napi::Number>().Uint32Value();
  // Counting user space of this very process asks for nothing else that needs a privilege.
  attr.exclude_kernel = 1;
  attr.exclude_hv = 1;
  int fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    return Napi::Number::New(env, 0);
  }
  return Napi::Number::New(env, errno);
}

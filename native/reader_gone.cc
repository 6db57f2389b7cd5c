// The kernel marks a pipe's write end EPOLLERR when its last reader goes, and wakes its pollers;
// a dup of the fd is polled, so Node's own stream keeps its fd to itself. The handle is unref'd:
// it never keeps the process alive, and lives until the process ends.
#include "reader_gone.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

namespace {

struct Watch {
  uv_poll_t poll;
  int fd;
  napi_env env;
  Napi::FunctionReference onGone;
};

void OnPoll(uv_poll_t* handle, int status, int events) {
  // libuv reports EPOLLERR as status UV_EBADF; a socket's hangup comes as UV_DISCONNECT.
  if (status == 0 && !(events & UV_DISCONNECT)) return;
  Watch* watch = static_cast<Watch*>(handle->data);
  uv_poll_stop(handle);
  Napi::Env env(watch->env);
  Napi::HandleScope scope(env);
  watch->onGone.Value().MakeCallback(env.Global(), {});
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* closed) {
    Watch* done = static_cast<Watch*>(closed->data);
    close(done->fd);
    delete done;
  });
}

}  // namespace

Napi::Value WatchReaderGone(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() != 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "watchReaderGone(fd: number, onGone: () => void)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  struct stat st;
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fstat(fd, &st) != 0 || !(S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) return Napi::Boolean::New(env, false);
  int copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return Napi::Boolean::New(env, false);
  uv_loop_t* loop;
  napi_get_uv_event_loop(env, &loop);
  Watch* watch = new Watch{{}, copy, env, Napi::Persistent(info[1].As<Napi::Function>())};
  watch->poll.data = watch;
  if (uv_poll_init(loop, &watch->poll, copy) != 0) {
    close(copy);
    delete watch;
    return Napi::Boolean::New(env, false);
  }
  uv_unref(reinterpret_cast<uv_handle_t*>(&watch->poll));
  uv_poll_start(&watch->poll, UV_DISCONNECT, OnPoll);
  return Napi::Boolean::New(env, true);
}

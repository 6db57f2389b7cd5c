// A thread of a session's own that runs its fills: records are taken from the ring and laid
// out for JS off the event loop, so that JS reads one delivery while the next is being filled.
// One fill at a time; each is reported on the loop through a uv_async_t the caller owns.
#pragma once
#include <uv.h>

#include <condition_variable>
#include <mutex>
#include <thread>

class FillThread {
 public:
  using Fill = void (*)(void* context);

  // Starts the thread; `fill(context)` is what each Start() runs there, and `done` is signalled
  // after each one returns.
  FillThread(Fill fill, void* context, uv_async_t* done);
  FillThread(const FillThread&) = delete;
  FillThread& operator=(const FillThread&) = delete;
  // Waits for a fill under way to end (one only asked for does not begin), then ends the thread.
  ~FillThread();

  // Runs one fill on the thread; the caller starts no other before `done` reports this one.
  void Start();

 private:
  void Run();

  Fill fill_;
  void* context_;
  uv_async_t* done_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool requested_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

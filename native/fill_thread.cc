#include "fill_thread.h"

#include <pthread.h>
#include <signal.h>

FillThread::FillThread(Fill fill, void* context, uv_async_t* done) : fill_(fill), context_(context), done_(done) {
  // Signals are Node's to take on its own thread: the fill thread starts with all of them blocked.
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  thread_ = std::thread(&FillThread::Run, this);
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
}

FillThread::~FillThread() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  thread_.join();
}

void FillThread::Start() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    requested_ = true;
  }
  wake_.notify_one();
}

void FillThread::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return requested_ || stopping_; });
    // Stopping: a fill asked for but not begun has nobody left to deliver to.
    if (stopping_) return;
    lock.unlock();
    fill_(context_);
    lock.lock();
    requested_ = false;
    uv_async_send(done_);
  }
}

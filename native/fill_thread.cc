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

void FillThread::Lend(const FillBuffer& buffer) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    lent_.push_back(buffer);
  }
  wake_.notify_one();
}

void FillThread::Request() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    requested_ = true;
  }
  wake_.notify_one();
}

void FillThread::TargetsExited() {
  std::lock_guard<std::mutex> lock(mutex_);
  targetsExited_ = true;
}

bool FillThread::Take(Filled* filled) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (filled_.empty()) return false;
  *filled = filled_.front();
  filled_.pop_front();
  return true;
}

void FillThread::Run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || (requested_ && !lent_.empty()); });
    if (stopping_) return;
    // Taken before the fill: a request that comes during it asks for another look.
    requested_ = false;
    FillBuffer buffer = lent_.front();
    lent_.pop_front();
    bool afterExit = targetsExited_;
    lock.unlock();
    Filled filled = fill_(context_, buffer);
    filled.afterExit = afterExit;
    lock.lock();
    // Nothing in it and nothing ended: not worth a turn of the loop (a quiet trace's every
    // tick); the buffer stays first in line.
    if (!filled.delivers() && !filled.full && !afterExit) {
      lent_.push_front(buffer);
      continue;
    }
    if (filled.full) requested_ = true;
    filled_.push_back(filled);
    uv_async_send(done_);
  }
}

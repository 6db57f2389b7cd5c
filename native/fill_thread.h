// A thread of a session's own that fills the buffers JS lends it: records are taken from the
// ring and laid out for JS off the event loop, one buffer after another while the ring holds
// more, so that JS reads one delivery while the next ones are filled. Each fill is reported on
// the loop through a uv_async_t the caller owns, in the order the buffers came, unless it found
// nothing and ended nothing: then its buffer waits, first in line, for the next.
#pragma once
#include <uv.h>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

// A buffer lent to the fill: records go in as they are, or as the columns of its layout.
struct FillBuffer {
  uint8_t* data;
  size_t capacity;
  bool columns;
};

// What one fill made of its buffer, as onBatch hands it to JS.
struct Filled {
  bool columns;
  // Records as they are: `bytes` bytes of `records` records ([u32 length][record], repeated).
  uint32_t bytes = 0;
  uint32_t records = 0;
  // Columns: `rows` rows, and `sideRecords` side records in `sideBytes` bytes.
  uint32_t rows = 0;
  uint32_t sideBytes = 0;
  uint32_t sideRecords = 0;
  // The buffer filled up before the ring emptied: the next buffer is filled at once.
  bool full = false;
  // Every target had exited before this fill began: if it emptied the ring, nothing follows.
  bool afterExit = false;

  bool delivers() const { return columns ? rows > 0 || sideRecords > 0 : records > 0; }
};

class FillThread {
 public:
  using Fill = Filled (*)(void* context, const FillBuffer& buffer);

  // Starts the thread: `fill(context, buffer)` is one fill, run there; `done` is signalled after each.
  FillThread(Fill fill, void* context, uv_async_t* done);
  FillThread(const FillThread&) = delete;
  FillThread& operator=(const FillThread&) = delete;
  // Waits for a fill under way to end (one only asked for does not begin), then ends the thread.
  ~FillThread();

  // A buffer to fill, after those lent before it.
  void Lend(const FillBuffer& buffer);
  // Look at the ring again (a wakeup, a tick): the next lent buffer is filled if there is one.
  void Request();
  // From now on every fill knows that the targets exited before it began.
  void TargetsExited();
  // The oldest fill not taken yet; false when there is none.
  bool Take(Filled* filled);

 private:
  void Run();

  Fill fill_;
  void* context_;
  uv_async_t* done_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<FillBuffer> lent_;
  std::deque<Filled> filled_;
  bool requested_ = false;
  bool targetsExited_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

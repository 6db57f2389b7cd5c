#include "ring.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

namespace {

// Publishing the consumer position frees ring space for the producers; doing it every this
// many bytes keeps a flood from seeing a full ring while a long block is read.
constexpr uint64_t kPublishEvery = 64 * 1024;

// How far ahead of the record being read the walk asks for memory: one page (measured against
// a quarter page and four pages, bench/run.js backlog rows; the floor's drain went 9.8 -> 4.3 ms).
constexpr uint64_t kPrefetchAhead = 4096;

// Records handed to the callback at once: few, so that its work on them (routing, column
// copies) runs while the memory the walk asked for comes in, rather than after a long walk has
// waited on it alone. The fill thread's CPU time per row, bench/run.js backlog rows, by block:
// 7.4 ns at 256, 7.0 at 64, 6.4 at 32, 6.0 at 16, 5.7 at 8, 7.0 at 4, where per-call work wins.
constexpr size_t kBlockRecords = 8;

uint64_t RecordSpan(uint32_t header) {
  uint32_t length = header & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
  return (uint64_t{length} + BPF_RINGBUF_HDR_SZ + 7) & ~uint64_t{7};
}

}  // namespace

RingReader::~RingReader() {
  if (consumerPosition_) munmap(consumerPosition_, pageSize_);
  if (producerPosition_) munmap(const_cast<uint64_t*>(producerPosition_), dataMappingBytes_);
}

int RingReader::Open(int mapFd) {
  struct bpf_map_info info = {};
  uint32_t infoSize = sizeof(info);
  if (bpf_obj_get_info_by_fd(mapFd, &info, &infoSize) < 0) return -errno;
  if (info.type != BPF_MAP_TYPE_RINGBUF) return -EINVAL;
  pageSize_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  mask_ = info.max_entries - 1;

  void* consumer = mmap(nullptr, pageSize_, PROT_READ | PROT_WRITE, MAP_SHARED, mapFd, 0);
  if (consumer == MAP_FAILED) return -errno;
  consumerPosition_ = static_cast<uint64_t*>(consumer);
  // The producer page, then the data pages mapped twice in a row, so that a record that wraps
  // around the end reads as one piece.
  dataMappingBytes_ = pageSize_ + 2 * size_t{info.max_entries};
  void* producer = mmap(nullptr, dataMappingBytes_, PROT_READ, MAP_SHARED, mapFd, pageSize_);
  if (producer == MAP_FAILED) return -errno;
  producerPosition_ = static_cast<const uint64_t*>(producer);
  data_ = static_cast<const uint8_t*>(producer) + pageSize_;
  // The kernel maps ring pages on first touch, one fault each, and MAP_POPULATE passes over
  // such a mapping: touched here, the faults come now rather than in the middle of a drain.
  // The second copy is only read by records that wrap, so it is left to fault as they come.
  uint8_t sink = 0;
  for (size_t at = 0; at < info.max_entries; at += pageSize_) sink ^= *static_cast<const volatile uint8_t*>(data_ + at);
  (void)sink;
  published_ = __atomic_load_n(consumerPosition_, __ATOMIC_ACQUIRE);
  return 0;
}

void RingReader::Publish(uint64_t position) {
  __atomic_store_n(consumerPosition_, position, __ATOMIC_RELEASE);
  published_ = position;
}

bool RingReader::Consume(OnRecords onRecords, void* context) {
  RingRecord block[kBlockRecords];
  // Where each record of the block starts: a record left by the callback is where the read resumes.
  uint64_t starts[kBlockRecords];
  uint64_t position = published_;
  bool readAny;
  do {
    readAny = false;
    uint64_t end = __atomic_load_n(producerPosition_, __ATOMIC_ACQUIRE);
    bool waiting = false;
    while (position < end && !waiting) {
      uint64_t walked = position;
      size_t count = 0;
      while (walked < end && count < kBlockRecords) {
        const uint8_t* header = data_ + (walked & mask_);
        // The CPU's own prefetchers stop at a page's end, so each new page of a backlog would
        // start with a wait on memory: asked for a page ahead, it is there when the walk arrives.
        __builtin_prefetch(data_ + ((walked + kPrefetchAhead) & mask_));
        uint32_t lengthWord = __atomic_load_n(reinterpret_cast<const uint32_t*>(header), __ATOMIC_ACQUIRE);
        // Reserved but not yet committed: everything after it waits for it.
        if (lengthWord & BPF_RINGBUF_BUSY_BIT) {
          waiting = true;
          break;
        }
        if (!(lengthWord & BPF_RINGBUF_DISCARD_BIT)) {
          starts[count] = walked;
          block[count++] = {header + BPF_RINGBUF_HDR_SZ, lengthWord};
        }
        walked += RecordSpan(lengthWord);
      }
      readAny |= walked != position;
      size_t taken = count ? onRecords(context, block, count) : 0;
      // Published only once the callback is done with the block: the producers may then reuse it.
      if (taken < count) {
        Publish(starts[taken]);
        return true;
      }
      position = walked;
      if (position - published_ >= kPublishEvery) Publish(position);
    }
    // Published before the producer position is read again: a record committed after this
    // sees the consumer caught up and wakes the reader (the kernel's rule), one committed
    // before it is seen by that read.
    if (position != published_) Publish(position);
  } while (readAny);
  return false;
}

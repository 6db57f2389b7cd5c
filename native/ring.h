// A BPF ring buffer read in place: the map's pages mapped once and touched up front, and the
// consumer position published per block of records rather than per record.
//
// The kernel maps a ring's pages on first touch: libbpf's ring_buffer takes those faults, one
// per 4 KiB, in its first pass over a fresh ring (on a busy VM, most of a backlog drain's time), and
// it stores the consumer position after every record, a cache line the producing CPUs read on
// every reserve.
#pragma once

#include <cstddef>
#include <cstdint>

class RingReader {
 public:
  // Called with each record; a negative return stops the read after that record (it is consumed).
  using OnRecord = int (*)(void* context, const void* record, size_t size);

  RingReader() = default;
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;
  ~RingReader();

  // Maps the ring of a BPF_MAP_TYPE_RINGBUF map; returns 0, or a negative errno.
  int Open(int mapFd);
  // Reads every committed record there is; returns the callback's negative value if it stopped
  // the read, else 0.
  int Consume(OnRecord onRecord, void* context);

 private:
  void Publish(uint64_t position);

  uint64_t* consumerPosition_ = nullptr;
  const uint64_t* producerPosition_ = nullptr;
  const uint8_t* data_ = nullptr;
  uint64_t mask_ = 0;
  size_t pageSize_ = 0;
  size_t dataMappingBytes_ = 0;
  uint64_t published_ = 0;
};

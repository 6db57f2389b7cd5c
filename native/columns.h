// What `trace.batches()` is filled by: ring records decoded straight into typed-array columns,
// one row per event, by a layout the stream declares in JS (src/streams/batch.ts). Records a
// stream must look at in JS (names, strings, stacks) are also copied whole to the buffer's side
// region with the row they belong to.
#pragma once
#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ring.h"

class ColumnLayout {
 public:
  // Parses the layout JS built (src/streams/batch.ts, nativeLayout); false after throwing.
  bool Parse(Napi::Env env, Napi::Object layout);

  // Buffer positions: rows below `capacity`, side records in [sideOffset, sideOffset + sideBytes).
  uint32_t capacity() const { return capacity_; }
  // The least a buffer must hold: the columns and the side region.
  size_t bufferBytes() const { return static_cast<size_t>(sideOffset_) + sideBytes_; }

  // Where a delivery being filled stands.
  struct Fill {
    uint8_t* buffer = nullptr;
    uint32_t rows = 0;
    uint32_t sideUsed = 0;
    uint32_t sideCount = 0;
  };

  // Adds records in order until one does not fit (it opens the next delivery); returns how
  // many it took. Those it cannot decode are taken and counted in `undecodable`: a row shorter
  // than minSize (a side-only record need only reach its kind byte), or a side record larger
  // than a whole side region.
  size_t Add(Fill& fill, const RingRecord* records, size_t count, uint64_t& undecodable) const;

 private:
  // kUndecodable is the walk's own: routes_ holds the rest, as JS set them.
  enum Route : uint8_t { kRow = 1, kSide = 2, kUndecodable = 4 };
  enum Code : uint8_t { kBits, kDouble, kFlag };
  struct Column {
    uint32_t from;
    uint32_t at;  // the column's byte offset in the buffer
    uint8_t fromSize;
    uint8_t width;
    Code code;
    bool isSigned;
    // Present only where the byte at whenOffset has a bit of whenMask set (clear, with whenClear).
    bool conditional;
    bool whenClear;
    uint32_t whenOffset;
    uint8_t whenMask;

    bool PresentIn(const uint8_t* record) const {
      return !conditional || (((record[whenOffset] & whenMask) != 0) != whenClear);
    }
  };

  // A field copied as it is into a column as wide, on every row: most columns are these.
  struct Copy {
    uint32_t from;
    uint32_t at;
    uint8_t width;
  };

  uint8_t RouteOf(const uint8_t* record, size_t size) const;
  void FillRows(uint8_t* buffer, uint32_t firstRow, const uint8_t* const* rows, uint32_t count) const;

  bool hasKind_ = false;
  uint32_t kindOffset_ = 0;
  uint8_t routes_[256] = {};
  // Rows whose field here is 0 also go to the side (e.g. a call that carries its own names).
  bool hasSideWhenZero_ = false;
  uint32_t sideWhenZeroOffset_ = 0;
  uint8_t sideWhenZeroSize_ = 0;
  uint32_t minSize_ = 0;
  uint32_t capacity_ = 0;
  uint32_t sideOffset_ = 0;
  uint32_t sideBytes_ = 0;
  std::vector<Copy> copies_;
  std::vector<Column> converted_;  // the rest: widened, converted to doubles, flags, conditional
};

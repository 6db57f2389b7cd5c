#include "columns.h"

#include <cmath>
#include <cstring>
#include <string>

#include "bytes.h"

namespace {

// [u32 length][u32 row][record bytes]: a side record, as src/streams/batch.ts walks them.
constexpr uint32_t kSideHeader = 2 * sizeof(uint32_t);

uint64_t SignExtended(uint64_t value, uint8_t size) {
  if (size == 8) return value;
  uint64_t sign = uint64_t{1} << (size * 8 - 1);
  return (value ^ sign) - sign;
}

bool Fail(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, "column layout: " + message).ThrowAsJavaScriptException();
  return false;
}

uint32_t U32(Napi::Object object, const char* key) {
  Napi::Value value = object.Get(key);
  return value.IsNumber() ? value.As<Napi::Number>().Uint32Value() : 0;
}

bool ValidSize(uint32_t size) { return size == 1 || size == 2 || size == 4 || size == 8; }

// Index of a valid size in the runs of copies: 1, 2, 4, 8 bytes -> 0..3.
int WidthIndex(uint8_t width) { return __builtin_ctz(width); }

}  // namespace

bool ColumnLayout::Parse(Napi::Env env, Napi::Object layout) {
  hasKind_ = layout.Get("kindOffset").IsNumber();
  kindOffset_ = U32(layout, "kindOffset");
  Napi::Value routes = layout.Get("routes");
  if (!routes.IsTypedArray() || routes.As<Napi::Uint8Array>().ByteLength() != sizeof routes_)
    return Fail(env, "routes must be a Uint8Array of 256");
  memcpy(routes_, routes.As<Napi::Uint8Array>().Data(), sizeof routes_);
  Napi::Value zero = layout.Get("sideWhenZero");
  hasSideWhenZero_ = zero.IsObject();
  if (hasSideWhenZero_) {
    sideWhenZeroOffset_ = U32(zero.As<Napi::Object>(), "offset");
    sideWhenZeroSize_ = static_cast<uint8_t>(U32(zero.As<Napi::Object>(), "size"));
    if (!ValidSize(sideWhenZeroSize_)) return Fail(env, "sideWhenZero.size must be 1, 2, 4 or 8");
  }
  minSize_ = U32(layout, "minSize");
  if (hasSideWhenZero_ && sideWhenZeroOffset_ + sideWhenZeroSize_ > minSize_) return Fail(env, "sideWhenZero reads past minSize");
  capacity_ = U32(layout, "capacity");
  sideOffset_ = U32(layout, "sideOffset");
  sideBytes_ = U32(layout, "sideBytes");

  Napi::Value given = layout.Get("columns");
  if (!given.IsArray()) return Fail(env, "columns must be an array");
  Napi::Array columns = given.As<Napi::Array>();
  for (std::vector<Copy>& run : copies_) run.clear();
  converted_.clear();
  for (uint32_t i = 0; i < columns.Length(); i++) {
    Napi::Object spec = columns.Get(i).As<Napi::Object>();
    std::string how = spec.Get("code").ToString();
    Column column = {};
    column.from = U32(spec, "from");
    column.fromSize = static_cast<uint8_t>(U32(spec, "fromSize"));
    column.at = U32(spec, "at");
    column.width = static_cast<uint8_t>(U32(spec, "width"));
    column.conditional = spec.Get("whenOffset").IsNumber();
    column.whenOffset = U32(spec, "whenOffset");
    column.whenMask = static_cast<uint8_t>(U32(spec, "whenMask"));
    column.whenClear = spec.Get("whenClear").ToBoolean().Value();
    column.isSigned = spec.Get("signed").ToBoolean().Value();
    if (!ValidSize(column.fromSize) || !ValidSize(column.width)) return Fail(env, "sizes must be 1, 2, 4 or 8");
    if (column.from + column.fromSize > minSize_ || (column.conditional && column.whenOffset >= minSize_))
      return Fail(env, "a column reads past minSize");
    if (column.at + static_cast<uint64_t>(column.width) * capacity_ > sideOffset_)
      return Fail(env, "a column overlaps the side region");
    if (how == "bits") {
      if (column.fromSize > column.width) return Fail(env, "a bit copy cannot narrow");
      column.code = kBits;
    } else if (how == "double" && column.width == 8) {
      column.code = kDouble;
    } else if (how == "flag" && column.width == 1 && column.conditional) {
      column.code = kFlag;
    } else {
      return Fail(env, "unknown column code " + how);
    }
    if (column.code == kBits && column.fromSize == column.width && !column.conditional)
      copies_[WidthIndex(column.width)].push_back({column.from, column.at});
    else
      converted_.push_back(column);
  }
  if (hasKind_ && kindOffset_ >= minSize_) return Fail(env, "kindOffset past minSize");
  return true;
}

uint8_t ColumnLayout::RouteOf(const uint8_t* record) const {
  uint8_t route = routes_[hasKind_ ? record[kindOffset_] : 0];
  if ((route & kRow) && hasSideWhenZero_ && ReadUnsigned(record + sideWhenZeroOffset_, sideWhenZeroSize_) == 0)
    route |= kSide;
  return route;
}

template <typename T>
void ColumnLayout::CopyRun(const std::vector<Copy>& run, uint8_t* buffer, uint32_t row, const uint8_t* record) {
  // Bounds held in locals: the byte stores below may alias any memory, the vector's included.
  const Copy* copy = run.data();
  const Copy* end = copy + run.size();
  size_t rowOffset = static_cast<size_t>(row) * sizeof(T);
  for (; copy != end; copy++) {
    T value;
    memcpy(&value, record + copy->from, sizeof value);
    memcpy(buffer + copy->at + rowOffset, &value, sizeof value);
  }
}

// The hot loop of batches(): runs of fixed-size copies per row, then the few columns that
// convert or test a flag; no allocation.
void ColumnLayout::FillRow(uint8_t* buffer, uint32_t row, const uint8_t* record) const {
  CopyRun<uint64_t>(copies_[3], buffer, row, record);
  CopyRun<uint32_t>(copies_[2], buffer, row, record);
  CopyRun<uint16_t>(copies_[1], buffer, row, record);
  CopyRun<uint8_t>(copies_[0], buffer, row, record);
  for (const Column& column : converted_) {
    const uint8_t* from = record + column.from;
    uint8_t* to = buffer + column.at + static_cast<size_t>(row) * column.width;
    bool present = !column.conditional || (((record[column.whenOffset] & column.whenMask) != 0) != column.whenClear);
    switch (column.code) {
      case kBits: {
        uint64_t value = present ? ReadUnsigned(from, column.fromSize) : 0;
        WriteUnsigned(to, column.width, column.isSigned ? SignExtended(value, column.fromSize) : value);
        break;
      }
      case kDouble: {
        uint64_t bits = ReadUnsigned(from, column.fromSize);
        double value = !present          ? NAN
                       : column.isSigned ? static_cast<double>(static_cast<int64_t>(SignExtended(bits, column.fromSize)))
                                         : static_cast<double>(bits);
        memcpy(to, &value, 8);
        break;
      }
      case kFlag: *to = present ? 1 : 0; break;
    }
  }
}

ColumnLayout::Result ColumnLayout::Add(Fill& fill, const uint8_t* record, size_t size) const {
  // A row is read at fixed offsets below minSize; a record that only goes to the side (a stack
  // trace's code names, shorter than its samples) need only reach its kind byte.
  bool makesNoRow = hasKind_ && size > kindOffset_ && !(routes_[record[kindOffset_]] & kRow);
  if (size < minSize_ && !makesNoRow) return kUndecodable;
  uint8_t route = RouteOf(record);
  bool row = route & kRow;
  if (route & kSide) {
    if (size + kSideHeader > sideBytes_) return kUndecodable;
    if (fill.sideUsed + kSideHeader + size > sideBytes_) return kFull;
  }
  if (row && fill.rows == capacity_) return kFull;
  if (route & kSide) {
    uint8_t* at = fill.buffer + sideOffset_ + fill.sideUsed;
    uint32_t header[2] = {static_cast<uint32_t>(size), fill.rows};
    memcpy(at, header, kSideHeader);
    memcpy(at + kSideHeader, record, size);
    fill.sideUsed += kSideHeader + static_cast<uint32_t>(size);
    fill.sideCount++;
  }
  if (row) FillRow(fill.buffer, fill.rows++, record);
  return kAdded;
}

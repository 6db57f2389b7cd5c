// The BPF objects compiled into this addon, looked up by name.
#pragma once
#include <cstddef>
#include <string>

struct EmbeddedObject {
  const void* bytes;
  size_t size;
};

// Returns false when no object has that name.
bool FindEmbeddedObject(const std::string& name, EmbeddedObject* out);

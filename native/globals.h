// A BPF object's global variables, found by name through its BTF: the constants set before
// load (.rodata) and the counters read after (.bss).
#pragma once
#include <cstdint>
#include <functional>

struct bpf_object;

// Calls visit(name, offset, size) for every variable in a global data section (.rodata, .bss);
// false when the object has no BTF or no such section.
bool ForEachGlobal(struct bpf_object* object, const char* section,
                   const std::function<void(const char*, uint32_t, uint32_t)>& visit);

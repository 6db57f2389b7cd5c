// For test/usdt.test.ts: throws and catches exceptions through libstdc++, whose __cxa_throw fires
// the libstdcxx:throw USDT probe with the exception object and its std::type_info. It prints
// "ready", waits for a line on stdin, prints the type_info's address, then throws COUNT
// exceptions, printing the address of each caught object, and exits.
#include <cstdio>
#include <cstdlib>
#include <typeinfo>

struct Thrown {
  int sequence;
};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s COUNT\n", argv[0]);
    return 2;
  }
  int count = std::atoi(argv[1]);
  std::printf("ready\n");
  std::fflush(stdout);
  char line[16];
  if (!std::fgets(line, sizeof line, stdin)) return 1;
  std::printf("typeinfo %p\n", static_cast<const void*>(&typeid(Thrown)));
  for (int i = 0; i < count; i++) {
    try {
      throw Thrown{i};
    } catch (const Thrown& caught) {
      std::printf("object %p %d\n", static_cast<const void*>(&caught), caught.sequence);
    }
  }
  std::fflush(stdout);
  return 0;
}

// The raw BPF_LINK_CREATE for uprobe multi links: the libbpf in use has no API for them and its
// headers no attribute layout, so the layout below follows the kernel's union bpf_attr
// (link_create.uprobe_multi, as in .output/vmlinux.h).
#include "uprobe_multi.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

namespace {

struct UprobeMultiLinkAttr {
  uint32_t programFd;
  uint32_t targetFd;
  uint32_t attachType;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t refCtrOffsets;
  uint64_t cookies;
  uint32_t count;
  uint32_t multiFlags;  // 1 = return probes
  uint32_t pid;
  uint32_t padding;
};
static_assert(sizeof(UprobeMultiLinkAttr) == 64, "link_create.uprobe_multi ends at byte 60");

constexpr uint32_t kReturnProbe = 1;  // BPF_F_UPROBE_MULTI_RETURN

int LinkCreate(const UprobeMultiLinkAttr& attr) {
  int fd = static_cast<int>(syscall(SYS_bpf, BPF_LINK_CREATE, &attr, sizeof(attr)));
  return fd >= 0 ? fd : -errno;
}

// A kernel with uprobe multi links accepts a program of that attach type and then refuses "/" as
// the file to probe (EBADF: not a regular file); one without them refuses the program or the
// attach type (EINVAL).
bool KernelHasUprobeMulti() {
  const struct bpf_insn returnZero[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, options, .expected_attach_type = static_cast<enum bpf_attach_type>(kUprobeMultiAttachType));
  int program = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "usdtrace_probe", "GPL", returnZero, 2, &options);
  if (program < 0) return false;
  uint64_t offset = 0;
  UprobeMultiLinkAttr attr = {};
  attr.programFd = program;
  attr.attachType = kUprobeMultiAttachType;
  attr.path = reinterpret_cast<uint64_t>("/");
  attr.offsets = reinterpret_cast<uint64_t>(&offset);
  attr.count = 1;
  int link = LinkCreate(attr);
  close(program);
  if (link >= 0) close(link);
  return link == -EBADF;
}

}  // namespace

bool UprobeMultiSupported() {
  static std::once_flag asked;
  static bool supported = false;
  std::call_once(asked, [] {
    const char* wanted = getenv("USDTRACE_UPROBE_MULTI");
    supported = !(wanted && strcmp(wanted, "0") == 0) && KernelHasUprobeMulti();
  });
  return supported;
}

int AttachUprobeMulti(int programFd, int pid, const std::string& path, const std::vector<UprobeSite>& sites,
                      bool retprobe) {
  std::vector<uint64_t> offsets, refCtrOffsets, cookies;
  for (const UprobeSite& site : sites) {
    offsets.push_back(site.fileOffset);
    refCtrOffsets.push_back(site.refCtrOffset);
    cookies.push_back(site.cookie);
  }
  UprobeMultiLinkAttr attr = {};
  attr.programFd = static_cast<uint32_t>(programFd);
  attr.attachType = kUprobeMultiAttachType;
  attr.path = reinterpret_cast<uint64_t>(path.c_str());
  attr.offsets = reinterpret_cast<uint64_t>(offsets.data());
  attr.refCtrOffsets = reinterpret_cast<uint64_t>(refCtrOffsets.data());
  attr.cookies = reinterpret_cast<uint64_t>(cookies.data());
  attr.count = static_cast<uint32_t>(sites.size());
  attr.multiFlags = retprobe ? kReturnProbe : 0;
  attr.pid = pid > 0 ? static_cast<uint32_t>(pid) : 0;  // 0: every process
  return LinkCreate(attr);
}

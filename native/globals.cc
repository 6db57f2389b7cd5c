#include "globals.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>

bool ForEachGlobal(struct bpf_object* object, const char* section,
                   const std::function<void(const char*, uint32_t, uint32_t)>& visit) {
  const struct btf* btf = bpf_object__btf(object);
  if (!btf) return false;
  int id = btf__find_by_name_kind(btf, section, BTF_KIND_DATASEC);
  if (id < 0) return false;
  const struct btf_type* datasec = btf__type_by_id(btf, id);
  const struct btf_var_secinfo* vars = btf_var_secinfos(datasec);
  for (int i = 0; i < btf_vlen(datasec); i++) {
    const struct btf_type* var = btf__type_by_id(btf, vars[i].type);
    visit(btf__name_by_offset(btf, var->name_off), vars[i].offset, vars[i].size);
  }
  return true;
}

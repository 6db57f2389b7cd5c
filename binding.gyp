{
  "targets": [
    {
      "target_name": "usdtrace",
      "sources": [
        "native/addon.cc",
        "native/columns.cc",
        "native/fill_thread.cc",
        "native/globals.cc",
        "native/static_link_fixes.c",
        "native/libbpf_log.cc",
        "native/objects.cc",
        "native/reader_gone.cc",
        "native/ring.cc",
        "native/session.cc",
        "native/uprobe_access.cc",
        "native/uprobe_multi.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "bpf",
        ".output"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-l:libbpf.a", "<(module_root_dir)/.output/libelf-shared.a", "-l:libz.a"],
      "ldflags": ["-Wl,--exclude-libs,ALL", "-static-libstdc++", "-static-libgcc"]
    }
  ]
}

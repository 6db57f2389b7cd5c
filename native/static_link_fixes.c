/*
 * Debian ships libbpf.a and libelf.a compiled for executables (PIE), not for shared objects,
 * and this addon links them statically so that it needs nothing but glibc at run time. Two of
 * their references cannot be satisfied inside a shared object; this file satisfies them here.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>

int snprintf(char *str, unsigned long size, const char *format, ...);

/*
 * libbpf.o reaches glibc's `stderr` PC-relatively, as if it were copied into an executable.
 * A hidden `stderr` of our own resolves that reference; it points at glibc's stream. libbpf only
 * writes to it from its default logger, which the addon replaces before any libbpf call.
 */
struct _IO_FILE;
__attribute__((visibility("hidden"))) struct _IO_FILE *stderr;

__attribute__((constructor)) static void use_glibc_stderr(void)
{
	struct _IO_FILE **glibc_stderr = dlsym(RTLD_DEFAULT, "stderr");

	if (glibc_stderr)
		stderr = *glibc_stderr;
}

/*
 * libelf keeps its error state in a local-exec TLS variable (elf_error.o), which no shared object
 * may contain. The build drops that member from the archive (see the Makefile) and these are its
 * three functions. usdtrace validates ELF files itself before libbpf reads them, so a numbered
 * message is enough.
 */
static __thread int last_error;

void __libelf_seterrno(int value) { last_error = value; }

int elf_errno(void)
{
	int error = last_error;

	last_error = 0;
	return error;
}

const char *elf_errmsg(int error)
{
	static __thread char message[32];

	if (error == -1)
		error = last_error;
	if (error == 0)
		return 0;
	snprintf(message, sizeof(message), "libelf error %d", error);
	return message;
}

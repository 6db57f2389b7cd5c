/*
 * For test/python-layout.test.ts: where the CPython whose headers this is compiled against keeps
 * what bpf/python_stack.bpf.h reads to walk a thread's frames, printed as JSON shaped like
 * src/cpython/layout.ts's FrameLayout (its offsets and the frame owners; 65535 and 255 where the
 * version has no such field or owner). Offsets are offsetof() in the version's own headers.
 * Build: gcc -I <include dir of python3.X> (Python.h, cpython/ and internal/).
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#if PY_VERSION_HEX < 0x030b0000
#include <frameobject.h>
#else
#include "internal/pycore_frame.h"
#endif
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#define FIELD(name, value) printf("  \"%s\": %ld,\n", name, (long)(value))
#define NONE 65535
#define NO_OWNER 255

int main(void)
{
	printf("{\n");
	FIELD("runtime_interpreters", offsetof(_PyRuntimeState, interpreters.head));
	FIELD("interpreter_next", offsetof(PyInterpreterState, next));
#if PY_VERSION_HEX >= 0x030b0000
	FIELD("interpreter_threads", offsetof(PyInterpreterState, threads.head));
	FIELD("thread_id", offsetof(PyThreadState, native_thread_id));
#else
	FIELD("interpreter_threads", offsetof(PyInterpreterState, tstate_head));
	FIELD("thread_id", offsetof(PyThreadState, thread_id));
#endif
	FIELD("thread_next", offsetof(PyThreadState, next));
#if PY_VERSION_HEX >= 0x030d0000
	FIELD("thread_frame", offsetof(PyThreadState, current_frame));
	FIELD("cframe_current_frame", NONE);
	FIELD("frame_code", offsetof(_PyInterpreterFrame, f_executable));
	FIELD("frame_instruction", offsetof(_PyInterpreterFrame, instr_ptr));
#elif PY_VERSION_HEX >= 0x030b0000
	FIELD("thread_frame", offsetof(PyThreadState, cframe));
	FIELD("cframe_current_frame", offsetof(_PyCFrame, current_frame));
	FIELD("frame_code", offsetof(_PyInterpreterFrame, f_code));
	FIELD("frame_instruction", offsetof(_PyInterpreterFrame, prev_instr));
#else
	FIELD("thread_frame", offsetof(PyThreadState, frame));
	FIELD("cframe_current_frame", NONE);
	FIELD("frame_code", offsetof(PyFrameObject, f_code));
	FIELD("frame_instruction", offsetof(PyFrameObject, f_lasti));
#endif
#if PY_VERSION_HEX >= 0x030b0000
	FIELD("frame_previous", offsetof(_PyInterpreterFrame, previous));
	FIELD("frame_owner", offsetof(_PyInterpreterFrame, owner));
	FIELD("code_name", offsetof(PyCodeObject, co_qualname));
	FIELD("code_instructions", offsetof(PyCodeObject, co_code_adaptive));
	FIELD("code_first_traceable", offsetof(PyCodeObject, _co_firsttraceable));
	FIELD("owner_generator", FRAME_OWNED_BY_GENERATOR);
#else
	FIELD("frame_previous", offsetof(PyFrameObject, f_back));
	FIELD("frame_owner", NONE);
	FIELD("code_name", offsetof(PyCodeObject, co_name));
	FIELD("code_instructions", NONE);
	FIELD("code_first_traceable", NONE);
	FIELD("owner_generator", NO_OWNER);
#endif
#if PY_VERSION_HEX >= 0x030c0000
	FIELD("owner_cstack", FRAME_OWNED_BY_CSTACK);
#else
	FIELD("owner_cstack", NO_OWNER);
#endif
	FIELD("code_filename", offsetof(PyCodeObject, co_filename));
	FIELD("code_first_line", offsetof(PyCodeObject, co_firstlineno));
	FIELD("code_linetable", offsetof(PyCodeObject, co_linetable));
	FIELD("object_type", offsetof(PyObject, ob_type));
	FIELD("unicode_state", offsetof(PyASCIIObject, state));
	FIELD("unicode_length", offsetof(PyASCIIObject, length));
	FIELD("unicode_ascii_data", sizeof(PyASCIIObject));
	FIELD("unicode_compact_data", sizeof(PyCompactUnicodeObject));
	FIELD("bytes_size", offsetof(PyVarObject, ob_size));
	printf("  \"bytes_data\": %ld\n}\n", (long)offsetof(PyBytesObject, ob_sval));
	return 0;
}

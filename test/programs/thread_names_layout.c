/*
 * For test/python-layout.test.ts: where the CPython whose headers this is compiled against keeps
 * what src/cpython/threads.ts reads for the threads' `threading` names, printed as JSON shaped
 * like src/cpython/layout.ts's ThreadNamesLayout. Offsets are offsetof(); where a header says it
 * with an inline function (the words before an object, a tagged pointer), that function is run on
 * an object of a made-up type.
 * Build: gcc -I <include dir of python3.X> (Python.h, cpython/ and internal/).
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include "internal/pycore_interp.h"
#include "internal/pycore_moduleobject.h"
#if PY_VERSION_HEX >= 0x030b0000
#include "internal/pycore_dict.h"
#include "internal/pycore_object.h"
#endif
#if PY_VERSION_HEX >= 0x030c0000
#include "internal/pycore_long.h"
#elif PY_VERSION_HEX < 0x030b0000
#include "longintrepr.h"
#endif

#define FIELD(name, value) printf("  \"%s\": %ld,\n", name, (long)(value))

/* The bits a PyASCIIObject.state bit-field takes, as an unsigned int. */
static unsigned int state_bits(PyASCIIObject *object)
{
	unsigned int bits;
	memcpy(&bits, &object->state, sizeof(bits));
	return bits;
}

int main(void)
{
	printf("{\n");
#if PY_VERSION_HEX >= 0x030c0000
	FIELD("interpreter_modules", offsetof(PyInterpreterState, imports.modules));
#else
	FIELD("interpreter_modules", offsetof(PyInterpreterState, modules));
#endif
	FIELD("module_dict", offsetof(PyModuleObject, md_dict));
	FIELD("type_basicsize", offsetof(PyTypeObject, tp_basicsize));
	FIELD("type_flags", offsetof(PyTypeObject, tp_flags));
	FIELD("type_dictoffset", offsetof(PyTypeObject, tp_dictoffset));
	FIELD("type_cached_keys", offsetof(PyHeapTypeObject, ht_cached_keys));
	FIELD("dict_keys", offsetof(PyDictObject, ma_keys));
	FIELD("dict_values", offsetof(PyDictObject, ma_values));
#if PY_VERSION_HEX >= 0x030c0000
	FIELD("long_size", offsetof(PyLongObject, long_value.lv_tag));
	FIELD("long_tag_bits", _PyLong_NON_SIZE_BITS);
	FIELD("long_digits", offsetof(PyLongObject, long_value.ob_digit));
	printf("  \"long_sign\": { \"mask\": %d, \"zero\": %d, \"negative\": %d },\n", SIGN_MASK, SIGN_ZERO, SIGN_NEGATIVE);
#else
	FIELD("long_size", offsetof(PyLongObject, ob_base.ob_size));
	FIELD("long_tag_bits", 0);
	FIELD("long_digits", offsetof(PyLongObject, ob_digit));
#endif
	FIELD("long_digit_bits", PyLong_SHIFT);
	FIELD("long_digit_size", sizeof(digit));
	{
		PyASCIIObject object;
		memset(&object, 0, sizeof(object));
		object.state.kind = 7;
		FIELD("unicode_kind_bits", state_bits(&object));
		memset(&object, 0, sizeof(object));
		object.state.compact = 1;
		FIELD("unicode_compact", state_bits(&object));
		memset(&object, 0, sizeof(object));
		object.state.ascii = 1;
		FIELD("unicode_ascii", state_bits(&object));
	}
#if PY_VERSION_HEX >= 0x030b0000
	printf("  \"keys\": { \"form\": \"log2\", \"log2_size\": %zu, \"log2_index_bytes\": %zu, \"kind\": %zu, \"nentries\": %zu, \"indices\": %zu },\n",
	       offsetof(PyDictKeysObject, dk_log2_size), offsetof(PyDictKeysObject, dk_log2_index_bytes),
	       offsetof(PyDictKeysObject, dk_kind), offsetof(PyDictKeysObject, dk_nentries),
	       offsetof(PyDictKeysObject, dk_indices));
	printf("  \"entry\": { \"size\": %zu, \"key\": %zu, \"value\": %zu },\n", sizeof(PyDictKeyEntry),
	       offsetof(PyDictKeyEntry, me_key), offsetof(PyDictKeyEntry, me_value));
	printf("  \"unicode_entry\": { \"size\": %zu, \"key\": %zu, \"value\": %zu },\n", sizeof(PyDictUnicodeEntry),
	       offsetof(PyDictUnicodeEntry, me_key), offsetof(PyDictUnicodeEntry, me_value));
	FIELD("keys_general", DICT_KEYS_GENERAL);
	FIELD("values_items", offsetof(PyDictValues, values));
	{
		static PyTypeObject type;
		static PyObject words[8];
		PyObject *object = &words[4];
		char *at = (char *)object;

		type.tp_flags = Py_TPFLAGS_MANAGED_DICT;
		type.tp_basicsize = sizeof(PyObject);
		Py_SET_TYPE(object, &type);
#if PY_VERSION_HEX >= 0x030d0000
		type.tp_flags |= Py_TPFLAGS_INLINE_VALUES;
		printf("  \"attributes\": { \"kind\": \"inline\", \"flag\": %ld, \"inline_flag\": %ld, \"dict\": %td, "
		       "\"values_capacity\": %zu, \"values_valid\": %zu },\n",
		       (long)Py_TPFLAGS_MANAGED_DICT, (long)Py_TPFLAGS_INLINE_VALUES,
		       (char *)_PyObject_ManagedDictPointer(object) - at, offsetof(PyDictValues, capacity),
		       offsetof(PyDictValues, valid));
		FIELD("inline_values", (char *)_PyObject_InlineValues(object) - at - type.tp_basicsize);
#elif PY_VERSION_HEX >= 0x030c0000
		PyDictOrValues *slot = _PyObject_DictOrValuesPointer(object);
		_PyDictOrValues_SetValues(slot, (PyDictValues *)at);
		printf("  \"attributes\": { \"kind\": \"dict-or-values\", \"flag\": %ld, \"dict_or_values\": %td, \"values_tag\": %td },\n",
		       (long)Py_TPFLAGS_MANAGED_DICT, (char *)slot - at, (char *)_PyDictOrValues_GetValues(*slot) - slot->values);
		FIELD("tagged_values_bit", _PyDictOrValues_IsValues(*slot));
#else
		printf("  \"attributes\": { \"kind\": \"managed\", \"flag\": %ld, \"values\": %td, \"dict\": %td },\n",
		       (long)Py_TPFLAGS_MANAGED_DICT, (char *)_PyObject_ValuesPointer(object) - at,
		       (char *)_PyObject_ManagedDictPointer(object) - at);
#endif
	}
#else
	/* 3.10's dict keys are in Objects/dict-common.h, which is not installed: the test measures them. */
	printf("  \"attributes\": { \"kind\": \"dict-offset\" },\n");
#endif
	printf("  \"pointer_size\": %zu\n}\n", sizeof(void *));
	return 0;
}

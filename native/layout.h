#pragma once
#include <napi.h>

// { <struct>: { size, fields: { <field>: offset } }, constants: { <name>: value } }
Napi::Object EventLayouts(Napi::Env env);

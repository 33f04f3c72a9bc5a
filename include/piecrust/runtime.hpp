#pragma once
// piecrust runtime: Pie's inferlet API in-process — Engine, Context, Forward, samplers, probes, stop
// conditions, drafters, constraints, KV export/import and stores.
#include <piecrust/runtime/adapter_id.hpp>
#include <piecrust/runtime/constraint.hpp>
#include <piecrust/runtime/context.hpp>
#include <piecrust/runtime/drafter.hpp>
#include <piecrust/runtime/engine.hpp>
#include <piecrust/runtime/forward.hpp>
#include <piecrust/runtime/kv_export.hpp>
#include <piecrust/runtime/kv_trust.hpp>
#include <piecrust/runtime/masked_slots.hpp>
#include <piecrust/runtime/pass_logits.hpp>
#include <piecrust/runtime/probe_spec.hpp>
#include <piecrust/runtime/regex_constraint.hpp>
#include <piecrust/runtime/sampler.hpp>
#include <piecrust/runtime/sampler_concept.hpp>
#include <piecrust/runtime/sqlite_store.hpp>
#include <piecrust/runtime/stop_condition.hpp>
#include <piecrust/runtime/store.hpp>
#include <piecrust/runtime/task.hpp>

#pragma once
// piecrust core: plain host C++ — masks, pages, page-trim, errors.
#include <piecrust/config.hpp>
#include <piecrust/core/attention_mask.hpp>
#include <piecrust/core/brle.hpp>
#include <piecrust/core/error.hpp>
#include <piecrust/core/logit_mask.hpp>
#include <piecrust/core/page_pool.hpp>
#include <piecrust/core/page_table.hpp>
#include <piecrust/core/token_meta.hpp>
#include <piecrust/core/trim_plan.hpp>

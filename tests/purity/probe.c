/* A program that links one pure library and refers to one of its
 * functions, so the link pulls its objects and their dependencies
 * (tests/purity/CMakeLists.txt reads the program's NEEDED entries). Never
 * run. */
#ifdef PROBE_saga_engine
#include "engine.h"

int main(void) {
  sagad_engine_t *(*volatile f)(const sagad_engine_config_t *) =
      sagad_engine_new;
  return f == 0;
}
#elif defined(PROBE_saga_index_query)
#include "index_query.h"

int main(void) {
  int (*volatile f)(const iq_filter_t *, const iq_stuck_t *, iq_stmt_t *) =
      iq_list;
  return f == 0;
}
#else
#include "saga_machine.h"

int main(void) {
  int (*volatile f)(sm_t *, const sm_input_t *, int64_t, sm_rng_t *,
                    sm_output_t *) =
      sm_step;
  return f == 0;
}
#endif

/* Forced into the e2e harness when it is compiled for the fault tests:
 * SAGAD_PATH names the variable that picks the product's sagad or the
 * fault-point build (faults.h). */
extern const char *faults_sagad_path;

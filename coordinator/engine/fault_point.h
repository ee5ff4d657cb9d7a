/* Compile-time fault points (after PostgreSQL's injection points): named
 * places in the coordinator where a TEST build (-DSAGA_FAULT_POINTS, the
 * sagad-faults program) kills itself so that a test hits a dangerous window
 * deterministically. In the product build FAULT_POINT() compiles to nothing.
 *
 * Test build: SAGA_FAULT_POINT=NAME[:N[:MS]] in the environment kills the
 * process with SIGKILL (no atexit, no flush: a power cut) at the N-th hit of
 * point NAME (default the 1st), after a pause of MS milliseconds in which
 * librdkafka's threads may still deliver what was produced. Only
 * sagad-faults reads it; no library does.
 *
 * Points: after_append (a batch is durable, no effect performed, no input
 * acked), mid_batch (half of a batch's effects performed), after_produce_
 * before_ack (all effects produced, inputs not acked), during_recovery (a
 * saga resumed on assignment, the rest of the partition not yet). */
#ifndef SAGAD_FAULT_POINT_H
#define SAGAD_FAULT_POINT_H

#ifdef SAGA_FAULT_POINTS
/* Count a hit of the point name; kill the process when the environment names
 * it and this is the hit it asks for. Loop thread only. */
void sagad__fault_point(const char *name);
#define FAULT_POINT(name) sagad__fault_point(name)
#else
#define FAULT_POINT(name) ((void)0)
#endif

#endif

/*
 * metric.h — the metrics the evaluate stage reports and which way is better:
 * the one list. The gate (workers/evaluation.c) takes its directions from it,
 * the pipeline YAML its valid `metric:` names, docs/training.md's table is
 * checked against it (tests/unit/test_jobs_gate.c).
 */
#ifndef ATELIER_METRIC_H
#define ATELIER_METRIC_H

/* X("name", higher_is_better, "what"). realism_acc (a 1-NN two-sample
 * accuracy) was retired: it said 0.97..1 for every model (docs/training.md). */
#define METRIC_MAP(X)                                                                  \
	X("content", 0, "chamfer px between the sketch's edges and the output's")      \
	X("content_f1", 1, "edge F1 at tolerance 1 px")                                \
	X("edge_f1", 1, "edge F1 at tolerance 2 px (saturates; reported)")             \
	X("kid", 0, "polynomial-kernel MMD^2 on fixed random features")                \
	X("diversity", 1, "LPIPS-like spread across styles / the real paintings' own") \
	X("recon_l1", 0, "painting reconstruction error")

/* 1: higher is better, 0: lower is better, -1: not a metric evaluate reports. */
int metric_direction(const char *name);
/* The i-th metric, NULL past the end. */
const char *metric_name(int i);

#endif

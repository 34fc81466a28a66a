/* Placeholder until the listing layer lands (issue #2). */
#include "core/store.h"

#include <stdlib.h>

#include "core/err.h"

void gen_list_destroy(struct gen_list *l) {
  free(l->gens);
  l->gens = NULL;
  l->n = 0;
}

void snapshot_list_destroy(struct snapshot_list *l) {
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

void segment_list_destroy(struct segment_list *l) {
  free(l->v);
  l->v = NULL;
  l->n = 0;
}

void store_snapshots(struct backend *b, const char *gen,
                     struct snapshot_list *out, store_cb cb, void *arg) {
  (void)b;
  (void)gen;
  (void)out;
  cb(arg, ERR_BACKEND, "store not implemented yet");
}

void store_segments(struct backend *b, const char *gen,
                    struct segment_list *out, store_cb cb, void *arg) {
  (void)b;
  (void)gen;
  (void)out;
  cb(arg, ERR_BACKEND, "store not implemented yet");
}

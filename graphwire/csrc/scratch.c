/* Scratch memory per thread and use (declared in graphwire.h). */
#include "graphwire.h"

GW_HIDDEN float* gw_scratch(int slot, size_t bytes) {
  static _Thread_local float* mem[3] = {NULL, NULL, NULL};
  static _Thread_local size_t cap[3] = {0, 0, 0};
  if (bytes > cap[slot]) {
    free(mem[slot]);
    cap[slot] = bytes + bytes / 2;
    mem[slot] = (float*)aligned_alloc(64, (cap[slot] + 63) / 64 * 64);
    if (!mem[slot]) cap[slot] = 0;
  }
  return mem[slot];
}

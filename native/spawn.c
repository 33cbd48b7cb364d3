/* spawn.c: placeholder; replaced by the native spawn implementation. */
int berth_spawn_placeholder(void);
int berth_spawn_placeholder(void) { return 0; }

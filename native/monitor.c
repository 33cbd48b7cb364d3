/* berth-monitor: placeholder until the engine's monitor lands (see issue 4). */
#include <stdio.h>
int main(void) { fputs("berth-monitor: not built yet\n", stderr); return 1; }

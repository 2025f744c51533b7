/* memhog MIB STATE: holds MIB MiB of anonymous memory, every 8-byte word a function of its
 * index, and writes "ready" to STATE. On SIGUSR1 it checks every word and writes "ok MIB"
 * or "bad N" (N words differ) to STATE. For the lazy migration test (TestMigrateLazy). */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t check;

static void on_usr1(int sig) { (void)sig; check = 1; }

static uint64_t word(uint64_t i)
{
	uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ULL;
	return x ^ (x >> 29);
}

static void report(const char *state, const char *fmt, unsigned long v)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", state);
	f = fopen(tmp, "w");
	if (!f)
		exit(2);
	fprintf(f, fmt, v);
	fclose(f);
	rename(tmp, state);
}

int main(int argc, char **argv)
{
	unsigned long mib, n, i, bad;
	uint64_t *m;

	if (argc != 3)
		return 1;
	mib = strtoul(argv[1], NULL, 10);
	n = mib << 17;
	m = malloc(n * sizeof(*m));
	if (!m)
		return 2;
	for (i = 0; i < n; i++)
		m[i] = word(i);
	signal(SIGUSR1, on_usr1);
	report(argv[2], "ready %lu\n", mib);
	for (;;) {
		pause();
		if (!check)
			continue;
		check = 0;
		for (bad = 0, i = 0; i < n; i++)
			bad += m[i] != word(i);
		if (bad)
			report(argv[2], "bad %lu\n", bad);
		else
			report(argv[2], "ok %lu\n", mib);
	}
}

// SPDX-License-Identifier: GPL-2.0
/*
 * service: a latency-sensitive server under a fixed, open-loop offered load.
 *
 *   service WS_MB RATE_HZ TOUCHES SECONDS [ACTIVE_S IDLE_S [ALLOC_KB]]
 *
 * Holds a working set of WS_MB MiB of anonymous memory. Requests arrive on
 * a schedule, RATE_HZ per second, whether or not the last one finished
 * (open loop: a slow request delays the next ones, and that delay counts);
 * each touches TOUCHES random pages of the working set. With ACTIVE_S and
 * IDLE_S the load alternates between ACTIVE_S seconds on and IDLE_S off,
 * starting on. With ALLOC_KB each request also fills a fresh buffer of
 * that size and frees it (mmap, write, munmap), as a server that builds a
 * response does: so an active service charges memory. Prints "ready" once the working set is resident, waits for a
 * line on stdin (the start signal), then runs for SECONDS and prints one
 * JSON object: every request's scheduled time (ms from the start) and
 * latency from its scheduled time to its completion (us).
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_until(double t)
{
	struct timespec ts = { .tv_sec = (time_t)t, .tv_nsec = (long)((t - (time_t)t) * 1e9) };

	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL))
		;
}

static unsigned long long rng = 88172645463325252ULL;

static unsigned long long next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	double rate, seconds, active = 0, idle = 0, start, sched;
	size_t bytes, pages, touches, n = 0, cap, alloc = 0;
	double *at, *lat;
	char line[16];
	char *ws;

	if (argc != 5 && argc != 7 && argc != 8) {
		fprintf(stderr, "usage: service WS_MB RATE_HZ TOUCHES SECONDS [ACTIVE_S IDLE_S [ALLOC_KB]]\n");
		return 2;
	}
	bytes = strtoul(argv[1], NULL, 10) << 20;
	rate = strtod(argv[2], NULL);
	touches = strtoul(argv[3], NULL, 10);
	seconds = strtod(argv[4], NULL);
	if (argc >= 7) {
		active = strtod(argv[5], NULL);
		idle = strtod(argv[6], NULL);
	}
	if (argc == 8)
		alloc = strtoul(argv[7], NULL, 10) << 10;
	if (!bytes || rate <= 0 || !touches || seconds <= 0 || active < 0 || idle < 0) {
		fprintf(stderr, "service: sizes, rate and durations must be positive\n");
		return 2;
	}
	pages = bytes / page;
	cap = (size_t)(rate * seconds) + 1;
	at = malloc(cap * sizeof(*at));
	lat = malloc(cap * sizeof(*lat));
	ws = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!at || !lat || ws == MAP_FAILED) {
		perror("service: allocation");
		return 1;
	}
	madvise(ws, bytes, MADV_NOHUGEPAGE);
	for (size_t i = 0; i < pages; i++)
		ws[i * page] = 1;
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;

	start = now();
	for (size_t i = 0; n < cap; i++) {
		sched = start + i / rate;
		if (sched - start >= seconds)
			break;
		/* Off phases: no requests are offered, none are counted. */
		if (active > 0 && idle > 0 && (sched - start) - (active + idle) *
		    (long)((sched - start) / (active + idle)) >= active)
			continue;
		sleep_until(sched);
		for (size_t t = 0; t < touches; t++)
			ws[(next() % pages) * page]++;
		if (alloc) {
			char *buf = mmap(NULL, alloc, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (buf != MAP_FAILED) {
				for (size_t o = 0; o < alloc; o += page)
					buf[o] = 1;
				munmap(buf, alloc);
			}
		}
		at[n] = (sched - start) * 1e3;
		lat[n] = (now() - sched) * 1e6;
		n++;
	}

	printf("{\"requests\": %zu, \"rate_hz\": %g, \"touches\": %zu, \"ws_mb\": %s, \"at_ms\": [", n, rate,
	       touches, argv[1]);
	for (size_t i = 0; i < n; i++)
		printf("%s%.1f", i ? ", " : "", at[i]);
	printf("], \"latency_us\": [");
	for (size_t i = 0; i < n; i++)
		printf("%s%.1f", i ? ", " : "", lat[i]);
	printf("]}\n");
	return 0;
}

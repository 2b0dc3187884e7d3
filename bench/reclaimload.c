// SPDX-License-Identifier: GPL-2.0
/*
 * reclaimload: an anonymous-memory workload that runs past memory.max.
 *
 *   reclaimload seq MB           touch MB once, sequentially
 *   reclaimload rand MB TOUCHES  touch TOUCHES random pages of an MB working set
 *
 * Work is timed in bursts of 256 page touches. Prints one JSON object:
 * total seconds, pages touched, and every burst's latency in microseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define BURST 256

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
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
	size_t bytes, pages, touches;
	int random_mode;
	double start, burst_start;
	char *p;

	if (argc < 3 || (strcmp(argv[1], "seq") && strcmp(argv[1], "rand")) ||
	    (!strcmp(argv[1], "rand") && argc != 4)) {
		fprintf(stderr, "usage: reclaimload seq MB | reclaimload rand MB TOUCHES\n");
		return 2;
	}
	random_mode = !strcmp(argv[1], "rand");
	bytes = strtoul(argv[2], NULL, 10) << 20;
	pages = bytes / page;
	touches = random_mode ? strtoul(argv[3], NULL, 10) : pages;
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("reclaimload: mmap");
		return 1;
	}
	madvise(p, bytes, MADV_NOHUGEPAGE);
	if (random_mode) {	/* populate the working set first, untimed */
		for (size_t off = 0; off < bytes; off += page)
			p[off] = 1;
	}
	printf("{\"mode\": \"%s\", \"pages\": %zu, \"burst_us\": [", argv[1], touches);
	start = burst_start = now();
	for (size_t i = 0; i < touches; i++) {
		size_t idx = random_mode ? next() % pages : i;

		p[idx * page] += 1;
		if ((i + 1) % BURST == 0) {
			double t = now();

			printf("%s%.1f", i + 1 == BURST ? "" : ", ", (t - burst_start) * 1e6);
			burst_start = t;
		}
	}
	printf("], \"seconds\": %.6f}\n", now() - start);
	return 0;
}

// SPDX-License-Identifier: GPL-2.0
/*
 * batch: memory-hungry batch work whose demand changes in phases.
 *
 *   batch EPOCH_MS PHASE... (PHASE = NAME:SECONDS:MB)
 *
 * e.g. batch 200 idle:2:0 steady:4:64 burst:4:192 recovery:6:32
 *
 * In each phase the job sweeps over MB MiB of anonymous memory as fast as
 * it can, writing one byte per page: the pages it touches are its work. A
 * phase asking for less memory than the last gives the rest back
 * (MADV_DONTNEED); MB 0 is idle (it sleeps). Waits for a line on stdin
 * (the start signal), then prints one JSON object: pages touched in each
 * EPOCH_MS epoch from the start, and the phases with their start times.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MAX_PHASES 16

struct phase {
	char name[16];
	double seconds;
	size_t mb;
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	long page = sysconf(_SC_PAGESIZE);
	struct phase phases[MAX_PHASES];
	size_t nphases = argc - 2, max_mb = 0, nepochs, held = 0, cursor = 0;
	double epoch_s, total = 0, start, t, phase_end;
	unsigned long *work;
	char line[16];
	char *mem;

	if (argc < 3 || nphases > MAX_PHASES) {
		fprintf(stderr, "usage: batch EPOCH_MS NAME:SECONDS:MB... (at most %d phases)\n", MAX_PHASES);
		return 2;
	}
	epoch_s = strtod(argv[1], NULL) / 1e3;
	for (size_t i = 0; i < nphases; i++) {
		if (sscanf(argv[i + 2], "%15[^:]:%lf:%zu", phases[i].name, &phases[i].seconds, &phases[i].mb) != 3 ||
		    phases[i].seconds <= 0) {
			fprintf(stderr, "batch: bad phase '%s': expected NAME:SECONDS:MB\n", argv[i + 2]);
			return 2;
		}
		total += phases[i].seconds;
		if (phases[i].mb > max_mb)
			max_mb = phases[i].mb;
	}
	if (epoch_s <= 0) {
		fprintf(stderr, "batch: EPOCH_MS must be positive\n");
		return 2;
	}
	nepochs = (size_t)(total / epoch_s) + 2;
	work = calloc(nepochs, sizeof(*work));
	mem = max_mb ? mmap(NULL, max_mb << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) : NULL;
	if (!work || mem == MAP_FAILED) {
		perror("batch: allocation");
		return 1;
	}
	if (mem)
		madvise(mem, max_mb << 20, MADV_NOHUGEPAGE);
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;

	start = now();
	phase_end = start;
	for (size_t i = 0; i < nphases; i++) {
		size_t pages = (phases[i].mb << 20) / page;

		if (phases[i].mb < held)
			madvise(mem + (phases[i].mb << 20), (held - phases[i].mb) << 20, MADV_DONTNEED);
		held = phases[i].mb;
		phase_end += phases[i].seconds;
		while ((t = now()) < phase_end) {
			size_t epoch = (size_t)((t - start) / epoch_s);

			if (!pages) {
				usleep(10000);
				continue;
			}
			/* A slice of 64 pages between clock reads. */
			for (int k = 0; k < 64; k++) {
				if (cursor >= pages)
					cursor = 0;
				mem[cursor++ * page]++;
			}
			if (epoch < nepochs)
				work[epoch] += 64;
		}
	}

	printf("{\"epoch_ms\": %s, \"phases\": [", argv[1]);
	t = 0;
	for (size_t i = 0; i < nphases; i++) {
		printf("%s{\"name\": \"%s\", \"start_s\": %g, \"seconds\": %g, \"mb\": %zu}", i ? ", " : "",
		       phases[i].name, t, phases[i].seconds, phases[i].mb);
		t += phases[i].seconds;
	}
	printf("], \"pages\": [");
	for (size_t i = 0; i < (size_t)(total / epoch_s); i++)
		printf("%s%lu", i ? ", " : "", work[i]);
	printf("]}\n");
	return 0;
}

#!/usr/bin/env node
// BullMQ no-op job throughput, the reference of `palaver-bench jobs`.
//
//   node bullmq-noop.js <jobs> <concurrency> <redis-url> <queue-name> [single-add-jobs]
//
// Starts a Worker with a no-op processor, then adds <jobs> jobs with `addBulk` in batches of
// 1000 (as BullMQ recommends for many jobs) and waits until the worker has completed them all.
// Throughput is measured from the first add to the last `completed` event. With
// [single-add-jobs] > 0 it then also measures `queue.add` one job per call (64 in flight),
// and the throughput of that run. Prints one JSON object on stdout; the queue is obliterated.
'use strict';

const { Queue, Worker } = require('bullmq');

const BATCH = 1000;
const IN_FLIGHT = 64;

function connection(url) {
  const u = new URL(url);
  return {
    host: u.hostname || '127.0.0.1',
    port: Number(u.port || 6379),
    password: u.password || undefined,
    db: u.pathname && u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0,
    maxRetriesPerRequest: null,
  };
}

async function run(n, concurrency, conn, name, single) {
  const queue = new Queue(name, { connection: conn });
  await queue.obliterate({ force: true }).catch(() => {});
  let done = 0;
  let finished;
  const allDone = new Promise((resolve) => {
    finished = resolve;
  });
  const worker = new Worker(name, async () => {}, { connection: conn, concurrency });
  worker.on('completed', () => {
    done += 1;
    if (done === n) finished(process.hrtime.bigint());
  });
  worker.on('error', (e) => console.error('worker error', e));
  await worker.waitUntilReady();
  await queue.waitUntilReady();

  const start = process.hrtime.bigint();
  if (single) {
    let next = 0;
    const adders = Array.from({ length: Math.min(IN_FLIGHT, n) }, async () => {
      while (next < n) {
        const i = next++;
        await queue.add('noop', { i });
      }
    });
    await Promise.all(adders);
  } else {
    for (let i = 0; i < n; i += BATCH) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) batch.push({ name: 'noop', data: { i: j } });
      await queue.addBulk(batch);
    }
  }
  const added = process.hrtime.bigint();
  const end = await allDone;
  await worker.close();
  await queue.obliterate({ force: true }).catch(() => {});
  await queue.close();
  const seconds = Number(end - start) / 1e9;
  const addSeconds = Number(added - start) / 1e9;
  return { jobs: n, seconds, jobsPerSec: n / seconds, addSeconds, addsPerSec: n / addSeconds };
}

async function main() {
  const [jobs, concurrency, url, name, singleJobs] = process.argv.slice(2);
  const n = Number(jobs);
  const c = Number(concurrency);
  if (!n || !c || !url || !name) {
    console.error('usage: bullmq-noop.js <jobs> <concurrency> <redis-url> <queue-name> [single-add-jobs]');
    process.exit(2);
  }
  const conn = connection(url);
  const bulk = await run(n, c, conn, name, false);
  const out = { ...bulk, bullmqVersion: require('bullmq/package.json').version };
  const m = Number(singleJobs || 0);
  if (m > 0) {
    const single = await run(m, c, conn, `${name}-single`, true);
    out.single = single;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);

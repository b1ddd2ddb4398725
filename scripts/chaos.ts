import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { faultIds, runChaos, table } from './chaos/run';

/**
 * npm run chaos: the whole system (two replicas of every service, two
 * gateways, a 3-node NATS cluster with R3 streams, a PostgreSQL and a Redis
 * of its own) under ~100 msg/s, one fault at a time, each checked against
 * PostgreSQL. Ends with `chaos: <F> faults, <L> lost, <D> doubled`; exits 1
 * when anything was lost or doubled or another check failed.
 */
const { values } = parseArgs({
  options: {
    faults: { type: 'string' },
    rate: { type: 'string', default: '100' },
    'rest-rate': { type: 'string', default: '10' },
    pairs: { type: 'string', default: '40' },
    'phase-seconds': { type: 'string', default: '20' },
    list: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});

if (values.help || values.list) {
  if (values.help)
    process.stdout.write(
      'usage: npm run chaos -- [--faults id,id,...] [--rate 100] [--rest-rate 10] [--pairs 40] [--phase-seconds 20] [--list]\n' +
        'CHAOS_KEEP=1 keeps the servers\' data in the run directory.\n',
    );
  process.stdout.write(`faults: ${faultIds().join(' ')}\n`);
  process.exit(0);
}

const report = await runChaos({
  faults: values.faults?.split(',').map((f) => f.trim()).filter(Boolean),
  rate: Number(values.rate),
  restRate: Number(values['rest-rate']),
  pairs: Number(values.pairs),
  phaseMs: Number(values['phase-seconds']) * 1000,
});

const md = table(report);
writeFileSync(join(report.dir, 'table.md'), `${md}\n`);
process.stdout.write(`\n${md}\n\n`);
process.stdout.write(`whole run: ${report.whole.messages} acknowledged messages, ${report.whole.lost} lost, ${report.whole.doubled} doubled; ${report.seconds.toFixed(0)} s; table and logs in ${report.dir}\n`);
for (const p of report.problems) process.stdout.write(`problem: ${p}\n`);
process.stdout.write(`chaos: ${report.faults} faults, ${report.lost} lost, ${report.doubled} doubled\n`);
process.exit(report.lost > 0 || report.doubled > 0 || report.problems.length > 0 ? 1 : 0);

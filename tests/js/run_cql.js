// Runs a generated ELM library in cql-execution + cql-exec-fhir (the engine DTR apps use)
// against FHIR Bundles, as a DTR client pre-populating a questionnaire would.
//
// stdin:  {"elm": <ELM JSON>, "valueSets": [<FHIR ValueSet with expansion>...],
//          "defines": ["name", ...], "cases": [{"bundle": <Bundle>, "serviceDate": "YYYY-MM-DD"|null}]}
// stdout: [{"<define>": <value as JSON>, ...}, ...]  one object per case, or {"error": "..."}
process.env.TZ = 'UTC'; // a dateTime without offset is UTC, as the project's FHIR intake reads it
const cql = require('cql-execution');
const cqlfhir = require('cql-exec-fhir');

function plain(value) {
  if (value === null || value === undefined) return null;
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value !== 'object') return value;
  if (value._json !== undefined) return value._json; // a FHIR object
  if (value.isDate || value.isDateTime) return value.toString();
  if (value.low !== undefined && value.high !== undefined && value.isUncertainty) {
    return { uncertain: [plain(value.low), plain(value.high)] };
  }
  if (value.isQuantity) return { value: value.value, unit: value.unit };
  const out = {};
  for (const key of Object.keys(value)) out[key] = plain(value[key]);
  return out;
}

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const library = new cql.Library(input.elm);
  const sets = {};
  for (const vs of input.valueSets || []) {
    sets[vs.url] = sets[vs.url] || {};
    sets[vs.url][vs.version] = (vs.expansion.contains || []).map(c => ({ code: c.code, system: c.system }));
  }
  const codeService = new cql.CodeService(sets);
  const out = [];
  const source = cqlfhir.PatientSource.FHIRv401(); // parses FHIR's model info: once
  for (const c of input.cases) {
    const parameters = {};
    if (c.serviceDate) parameters['Service Date'] = cql.Date.parse(c.serviceDate);
    const executor = new cql.Executor(library, codeService, parameters);
    source.reset();
    source.loadBundles([c.bundle]);
    const results = await executor.exec(source);
    const patient = Object.values(results.patientResults)[0] || {};
    const row = {};
    for (const name of input.defines) row[name] = plain(patient[name]);
    out.push(row);
  }
  process.stdout.write(JSON.stringify(out));
}

main().catch(error => {
  process.stdout.write(JSON.stringify({ error: String(error && error.stack || error) }));
  process.exitCode = 1;
});

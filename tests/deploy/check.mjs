// tests/deploy/check.mjs — schema checks of deploy/, run by tests/test_deploy.py.
//
//   node check.mjs k8s FILE...    every document of every FILE against the
//                                 Kubernetes API schema of its apiVersion/kind
//                                 (kubernetes-models: wrong types, missing
//                                 required fields, bad enums fail; unknown
//                                 fields do not, as the API's OpenAPI does not
//                                 forbid them: tests/test_deploy.py checks
//                                 the fields it relies on itself)
//   node check.mjs compose FILE   FILE (anchors and merge keys resolved, as
//                                 docker compose does) against the
//                                 compose-spec JSON schema dclint ships
//   node check.mjs json FILE...   the documents of each FILE as JSON (the
//                                 same parse, for the test's cross-checks:
//                                 {"FILE": [doc, ...], ...})
//
// Prints one JSON object: {"ok": [...], "errors": [...]}; exit 0 either way
// (the test reads the list), 2 on bad usage.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";
import Ajv from "ajv";

const require = createRequire(import.meta.url);
const [mode, ...files] = process.argv.slice(2);
const ok = [];
const errors = [];

function load(file) {
	// merge: true resolves "<<: *anchor" the way compose does; uniqueKeys
	// (the default) makes a key written twice an error.
	const docs = parseAllDocuments(readFileSync(file, "utf8"), { merge: true });
	return docs.map((d, i) => {
		if (d.errors.length) throw new Error(`${file} document ${i}: ${d.errors.map((e) => e.message).join("; ")}`);
		return d.toJS({ maxAliasCount: 1000 });
	});
}

// apiVersion "apps/v1" -> kubernetes-models/apps/v1, "v1" -> kubernetes-models/v1.
function modelFor(apiVersion, kind) {
	if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[A-Za-z0-9.\/]+$/.test(apiVersion) ||
	    !/^[A-Za-z0-9]+$/.test(kind))
		return null;
	try {
		const mod = require(`kubernetes-models/${apiVersion}/${kind}`);
		return mod[kind] || null;
	} catch (e) {
		return null;
	}
}

if (mode === "k8s") {
	for (const file of files) {
		let docs;
		try {
			docs = load(file);
		} catch (e) {
			errors.push(String(e.message));
			continue;
		}
		docs.forEach((doc, i) => {
			if (doc === null || doc === undefined) return;
			const what = `${file}[${i}] ${doc.apiVersion}/${doc.kind} ${doc.metadata && doc.metadata.name}`;
			const Model = modelFor(doc.apiVersion, doc.kind);
			if (!Model) {
				errors.push(`${what}: no schema for this apiVersion/kind in kubernetes-models`);
				return;
			}
			try {
				new Model(doc).validate();
				ok.push(what);
			} catch (e) {
				errors.push(`${what}: ${e.message}`);
			}
		});
	}
} else if (mode === "compose" && files.length === 1) {
	const schema = JSON.parse(readFileSync(new URL("node_modules/dclint/schemas/compose.schema.json", import.meta.url), "utf8"));
	// The schema is draft-07, but names its meta-schema by an https URL ajv
	// does not know (it has draft-07 built in), and carries annotations ajv's
	// strict mode rejects.
	delete schema.$schema;
	const ajv = new Ajv({ strict: false, allErrors: true });
	const validate = ajv.compile(schema);
	try {
		const [doc] = load(files[0]);
		if (validate(doc)) ok.push(`${files[0]}: compose-spec`);
		else
			for (const e of validate.errors)
				errors.push(`${files[0]}${e.instancePath}: ${e.message} ${JSON.stringify(e.params)}`);
	} catch (e) {
		errors.push(String(e.message));
	}
} else if (mode === "json") {
	const out = {};
	for (const file of files) out[file] = load(file);
	console.log(JSON.stringify(out));
	process.exit(0);
} else {
	console.error("usage: node check.mjs k8s FILE... | compose FILE | json FILE...");
	process.exit(2);
}
console.log(JSON.stringify({ ok, errors }));

// Asks llama.cpp (through the npm package node-llama-cpp 3.21.1, prebuilt CPU binaries) for the
// token ids of every string of tests/fixtures/gguf-tokenizer/strings.json in each GGUF given,
// and writes them as a reference file that tests/gguf_tokenizer.rs compares jielong with.
// Never a dependency of the tests: run it again only to remake the references.
//
// Setup once, in a folder outside the repository:
//   mkdir -p /work/llamacpp && cd /work/llamacpp && npm init -y && npm i -E node-llama-cpp@3.21.1
// Run from that folder (node resolves node-llama-cpp from the current folder):
//   cp /work/main/scripts/make_gguf_tokenizer_refs.mjs . && node make_gguf_tokenizer_refs.mjs \
//       /work/main/tests/fixtures/gguf-tokenizer/strings.json OUT.json A.gguf [B.gguf ...]
//
// For each file the output holds, under the file's name: what llama.cpp says about BOS/EOS
// (ids, and whether a prompt gets them: llama_vocab_get_add_bos / add_eos), and per string the
// ids with special tokens parsed (`special`: llama_tokenize(parse_special = true)), without
// (`plain`), both with add_special = false as node-llama-cpp calls it, and the text llama.cpp
// detokenizes the `special` ids to (`decoded`, special tokens rendered).
import {readFileSync, writeFileSync} from "node:fs";
import {basename, join} from "node:path";
import {getLlama} from "node-llama-cpp";

const [stringsPath, outPath, ...models] = process.argv.slice(2);
if (!stringsPath || !outPath || models.length === 0) {
    console.error("usage: node make_gguf_tokenizer_refs.mjs strings.json out.json model.gguf...");
    process.exit(2);
}
const strings = JSON.parse(readFileSync(stringsPath, "utf8"));
// The package does not export its package.json; read it where npm put it.
const version = JSON.parse(readFileSync(join(process.cwd(), "node_modules/node-llama-cpp/package.json"), "utf8")).version;
const llama = await getLlama({gpu: false, build: "never", logLevel: "error"});

const out = {
    made_by: `scripts/make_gguf_tokenizer_refs.mjs with node-llama-cpp ${version} (bundled llama.cpp: ${llama.llamaCppRelease.repo} ${llama.llamaCppRelease.release})`,
    strings: basename(stringsPath),
    files: {},
};
for (const modelPath of models) {
    // Only the vocabulary is read: the fixtures hold no tensors.
    const model = await llama.loadModel({modelPath, vocabOnly: true});
    const entry = {
        bos: model.tokens.bos,
        eos: model.tokens.eos,
        add_bos: model.tokens.shouldPrependBosToken,
        add_eos: model.tokens.shouldAppendEosToken,
        special: [],
        plain: [],
        decoded: [],
    };
    for (const text of strings) {
        const special = Array.from(model.tokenize(text, true));
        entry.special.push(special);
        entry.plain.push(Array.from(model.tokenize(text, false)));
        entry.decoded.push(model.detokenize(special, true));
    }
    out.files[basename(modelPath)] = entry;
    await model.dispose();
    console.error(`${basename(modelPath)}: ${strings.length} strings`);
}
writeFileSync(outPath, JSON.stringify(out) + "\n");

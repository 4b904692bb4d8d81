"""The official `openai` client against the live `jielong serve`: chat, completions,
streaming, log-probabilities, images, speech and errors, unchanged client code.

Run: pip install -r tests/python/requirements.txt; JIELONG_BIN=... pytest tests/python/test_openai.py
"""

import base64
import math

import openai
import pytest
from openai import OpenAI

from conftest import AUDIO, IMAGE, TEXT, audio_rate


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=server.base + "/v1", api_key="unused", max_retries=0)


def test_models_are_listed(client):
    ids = {m.id for m in client.models.list()}
    assert {TEXT, IMAGE, AUDIO} <= ids
    assert client.models.retrieve(TEXT).id == TEXT


def test_chat(client):
    r = client.chat.completions.create(
        model=TEXT,
        messages=[{"role": "system", "content": "You are a player."}, {"role": "user", "content": "Who goes there?"}],
        max_tokens=24,
        seed=4,
        temperature=0.8,
    )
    assert r.object == "chat.completion"
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    again = client.chat.completions.create(
        model=TEXT,
        messages=[{"role": "system", "content": "You are a player."}, {"role": "user", "content": "Who goes there?"}],
        max_tokens=24,
        seed=4,
        temperature=0.8,
    )
    assert again.choices[0].message.content == choice.message.content


def test_chat_streams_the_same_text_with_usage(client):
    kwargs = dict(model=TEXT, messages=[{"role": "user", "content": "Speak!"}], max_tokens=30, seed=9, n=2)
    whole = client.chat.completions.create(**kwargs)
    stream = client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    texts = ["", ""]
    usage = None
    finish = [None, None]
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            texts[c.index] += c.delta.content or ""
            finish[c.index] = c.finish_reason or finish[c.index]
    assert texts == [c.message.content for c in whole.choices]
    assert finish == [c.finish_reason for c in whole.choices]
    assert usage is not None and usage.completion_tokens == whole.usage.completion_tokens


def test_chat_logprobs(client):
    r = client.chat.completions.create(
        model=TEXT, messages=[{"role": "user", "content": "Hail"}], max_tokens=10, seed=1,
        logprobs=True, top_logprobs=5,
    )
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert "".join(t.token for t in content) == r.choices[0].message.content
    for t in content:
        assert t.logprob <= 0
        assert 1 <= len(t.top_logprobs) <= 5
        assert sum(math.exp(a.logprob) for a in t.top_logprobs) <= 1.0001


def test_completions_with_n_logprobs_and_sampler_fields(client):
    r = client.completions.create(
        model=TEXT, prompt="ROMEO:", max_tokens=16, seed=7, temperature=0.8, n=2, logprobs=3,
        stop=["\n\n"], extra_body={"top_k": 40, "min_p": 0.02, "repetition_penalty": 1.1},
    )
    assert r.object == "text_completion"
    assert len(r.choices) == 2
    for c in r.choices:
        assert len(c.logprobs.tokens) == len(c.logprobs.token_logprobs) == len(c.logprobs.top_logprobs)
        assert all(len(top) <= 3 for top in c.logprobs.top_logprobs)
    single = client.completions.create(
        model=TEXT, prompt="ROMEO:", max_tokens=16, seed=8, temperature=0.8, logprobs=3,
        stop=["\n\n"], extra_body={"top_k": 40, "min_p": 0.02, "repetition_penalty": 1.1},
    )
    assert single.choices[0].text == r.choices[1].text, "choice i draws with seed + i"


def test_completions_stream_matches(client):
    kwargs = dict(model=TEXT, prompt=[19, 24, 25, 17, 27], max_tokens=25, seed=3)
    whole = client.completions.create(**kwargs).choices[0].text
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kwargs) if c.choices)
    assert streamed == whole


def test_echo_scores_the_prompt(client):
    r = client.completions.create(model=TEXT, prompt="To be, or not to be", max_tokens=0, echo=True, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == "To be, or not to be"
    assert lp.token_logprobs[0] is None
    assert len(lp.token_logprobs) == len("To be, or not to be")
    assert all(x < 0 for x in lp.token_logprobs[1:])


def test_images(client):
    r = client.images.generate(model=IMAGE, prompt="3", n=2, response_format="b64_json", extra_body={"seed": 5})
    assert len(r.data) == 2
    png = base64.b64decode(r.data[0].b64_json)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    events = list(client.images.generate(model=IMAGE, prompt="3", stream=True, extra_body={"seed": 5}))
    kinds = [e.type for e in events]
    assert kinds.count("image_generation.partial_image") == 14
    assert kinds[-1] == "image_generation.completed"
    assert events[-1].b64_json == r.data[0].b64_json, "streamed and whole images agree"


def test_speech(client, tmp_path):
    audio = client.audio.speech.create(
        model=AUDIO, voice="alloy", input="4", response_format="wav", extra_body={"seconds": 0.05, "seed": 2},
    )
    data = audio.read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert len(data) == 44 + 2 * round(0.05 * audio_rate())
    with client.audio.speech.with_streaming_response.create(
        model=AUDIO, voice="alloy", input="4", response_format="wav", stream_format="sse",
        extra_body={"seconds": 0.05, "seed": 2},
    ) as response:
        body = b"".join(response.iter_bytes())
    events = [b for b in body.split(b"\n\n") if b.strip()]
    assert b"speech.audio.delta" in events[0]
    assert b"speech.audio.done" in events[-1]


def test_errors_are_typed(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=TEXT, messages=[{"role": "user", "content": "x"}], temperature=-1)
    assert e.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=TEXT, prompt="A" * 400)
    assert e.value.code == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model=IMAGE, prompt="x")
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="gpt-9", prompt="x")
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.APIStatusError) as e:
        client.completions.create(model=TEXT, prompt="A" * 2_000_000)
    assert e.value.status_code == 413
    # The server goes on.
    assert client.completions.create(model=TEXT, prompt="A", max_tokens=2).choices


def test_api_key(keyed_server):
    wrong = OpenAI(base_url=keyed_server.base + "/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    right = OpenAI(base_url=keyed_server.base + "/v1", api_key="sesame", max_retries=0)
    assert right.completions.create(model=TEXT, prompt="A", max_tokens=2).choices

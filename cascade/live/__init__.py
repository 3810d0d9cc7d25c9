"""The live turn: audio decoded while it arrives, the reply started before the user is known to be done.

`LiveTurn` (turn.py) is fed 16 kHz PCM16 frames as they are spoken. Silero VAD (vad.py, faster-whisper's
model run frame by frame with its state carried) marks each 32 ms frame speech or silence. A pause of
`pause_ms` closes a window: it is decoded at once while the user goes on speaking. Whether the user is
done is decided from the pause AND from whether the words so far read as finished (endpoint.py: the
LLM's own probability that the user's message ends there), so a sentence with pauses in it stays one
turn while a finished one is answered after a short silence. The correction and the reply (reply.py)
start at the pause, held until the end of speech is confirmed and dropped if the user speaks again.
The gateway's WebSockets (/v1/live, and OpenAI's Realtime API in realtime.py), `cascade chat --live`
and the benchmark all drive the one class; none of these modules knows sockets.
"""

from cascade.live.endpoint import EndOfTurn, build_detector
from cascade.live.reply import _Responder, _Speech, answer
from cascade.live.replay import join_audio, replay
from cascade.live.turn import LiveTurn
from cascade.live.vad import CONTEXT, FRAME, StreamingVad, pcm16

__all__ = ["CONTEXT", "FRAME", "EndOfTurn", "LiveTurn", "answer", "build_detector", "StreamingVad", "_Responder", "_Speech", "join_audio", "pcm16", "replay"]

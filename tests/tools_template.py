"""A Jinja chat template that renders tools the way Hermes- and Qwen-style templates do
(written for these tests: Gemma 3 270M ships no template of its own)."""

TOOLS_TEMPLATE = """\
{%- if tools %}<start_of_turn>user
You may call functions. Reply with <tool_call>{"name": NAME, "arguments": ARGUMENTS}</tool_call>.
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools><end_of_turn>
{% endif %}
{%- for message in messages %}
{%- if message.role == "tool" %}<start_of_turn>user
<tool_response id="{{ message.tool_call_id }}">{{ message.content }}</tool_response><end_of_turn>
{% elif message.tool_calls %}<start_of_turn>model
{% for call in message.tool_calls %}
{%- set arguments = call.function.arguments | tojson %}
<tool_call>{"name": "{{ call.function.name }}", "arguments": {{ arguments }}}</tool_call>
{%- endfor %}<end_of_turn>
{% else %}<start_of_turn>{{ "model" if message.role == "assistant" else "user" }}
{{ message.content }}<end_of_turn>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<start_of_turn>model
{% endif %}"""
